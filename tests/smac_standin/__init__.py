"""A STAND-IN for SMAC's ``smac.env.StarCraft2Env`` -- for tests only, not StarCraft II.

StarCraft II cannot be installed or run on the machines that develop and test lica
(there is no SC2 binary on PyPI or apt, and no internet to fetch Blizzard's package),
so lica's SMAC adapter (:mod:`lica.envs.smac`) is tested against this stand-in instead.
On a machine with StarCraft II the adapter imports the real ``smac.env.StarCraft2Env``.

What is faithful to SMAC (so the adapter is exercised the way SMAC will exercise it):

* the constructor keywords of ``StarCraft2Env`` (an unknown keyword is a ``TypeError``;
  an unknown map a ``KeyError`` from :func:`get_map_params`, as in SMAC);
* the method names and return shapes: ``reset() -> (obs list, state)``,
  ``step(actions) -> (reward, terminated, info)``, ``get_obs``, ``get_state``,
  ``get_avail_actions``, ``get_env_info``, ``get_stats``, ``close``, ``seed``;
* observation and state SIZES follow SMAC's formulas, so the paper's maps have SMAC's
  real dimensions (5m_vs_6m: obs 55, state 98, 12 actions);
* actions: 0 no-op (the only action of a dead agent, illegal for a live one), 1 stop,
  2-5 move north/south/east/west, 6+ attack enemy ``j`` (in shooting range, alive);
  taking an unavailable action is an ``AssertionError``, as in SMAC;
* ending: all enemies dead -> ``terminated=True, info["battle_won"]=True``; all allies
  dead -> a defeat; after ``episode_limit`` steps -> ``terminated=True`` with
  ``info["episode_limit"]=True`` ONLY when ``continuing_episode=True`` -- exactly like
  SMAC, which with ``continuing_episode=False`` (the reference setting) reports a
  time-out only through its ``timeouts`` counter;
* SMAC's reward shaping (damage + ``reward_death_value`` per kill + ``reward_win``,
  ``reward_only_positive``, ``reward_scale`` by ``max_reward / reward_scale_rate``);
* the seed is taken at construction only; ``reset()`` has no seed argument; the "game"
  is launched at the first ``reset`` (``launches`` counts launches).

What is NOT StarCraft II: the combat is a toy on a 32x32 open plane.  Enemies walk to
the nearest ally and shoot it; every unit deals a fixed damage per step; Medivacs do not
heal; there is no terrain, no cooldown, no unit micro.  Numbers learned on it say nothing
about SMAC.
"""

from .starcraft2 import MAP_PARAMS, StarCraft2Env, get_map_params

__all__ = ["MAP_PARAMS", "StarCraft2Env", "get_map_params"]
