"""JaxMARL backend: natively batched environments (``jit`` + ``vmap``, no worker processes).

``make_vec_env(cfg, num_envs)`` returns a :class:`JaxVecEnv` that steps ``num_envs``
copies of one JaxMARL environment with a single jitted, vmapped call per step and one
device->host transfer (``jax.device_get`` of one tuple).  Two families are supported:

**MPE Cooperative Navigation** (``scenario: spread``; JaxMARL ``MPE_simple_spread_v3``,
class ``SimpleSpreadMPE``), ``n_agents`` agents and as many landmarks (n = 3 and 5 in the
paper).  Discrete actions, JaxMARL/PettingZoo order ``[no-op, left (-x), right (+x),
down (-y), up (+y)]``; all 5 always available.  Observation per agent (JaxMARL, same
layout as PettingZoo/mpe2): own velocity (2), own position (2), landmark positions
relative to the agent (2n), other agents' relative positions (2(n-1)), other agents'
communication (2(n-1), always 0): 18 numbers for n = 3, 30 for n = 5.  ``state`` is the
concatenation of all agents' observations (as in the mpe backend).

The **team reward** is the paper's, computed by this module from JaxMARL's physical
state *after* the step (``State.p_pos``: agents are entities ``0..n-1``, landmarks
``n..2n-1``), not taken from JaxMARL's per-agent rewards (those mix a local collision
term and the global term with ``local_ratio``)::

    reward = -sum_{landmark l} min_{agent a} ||p_a - p_l||_2
             - #{agent pairs i < j : ||p_i - p_j||_2 < rad_i + rad_j}

with JaxMARL's agent radius 0.15 (so a pair collides below distance 0.3).  The first term
is exactly JaxMARL's ``global_rew``; the pair test is JaxMARL's ``is_collision``; each
colliding pair costs -1 once (JaxMARL and PettingZoo charge it once *per agent*).  MPE
episodes never terminate: they are ``truncated`` after ``episode_limit`` steps (default
25).  JaxMARL's own ``done`` is ignored (it fires one step late, after 26 steps).

**SMAX** (``scenario: <map name>``, class ``HeuristicEnemySMAX``, scenario from
``jaxmarl.environments.smax.map_name_to_scenario``; any registered SMAX map works, e.g.
``2s3z``, ``3s5z``, ``5m_vs_6m``, ``3s5z_vs_3s6z``, ``6h_vs_8z``, ``smacv2_5_units``; an
unknown name raises ``ValueError`` listing the known ones).  The learned team is SMAX's
"allies" (``env.agents`` order ``ally_0..``); the enemies follow JaxMARL's heuristic
policy.  Observations are SMAX's ``unit_list`` vectors; ``state`` is SMAX's world state
(``obs["world_state"]``: health fraction, position, weapon cooldown and unit-type one-hot
of every unit, then all units' team and type ids), scaled like SMAX's observations and
SMAC's state: positions divided by the map's width and height (SMAX gives map units,
0..32), cooldowns by the longest weapon cooldown of the unit types, type ids by the
largest id, then clipped to [0, 1] as SMAX clips the cooldowns it observes (they run
below 0 between shots; docs/algorithm.md §10).
``avail`` comes from ``env.get_avail_actions`` (``[up, right, down, left, stop, attack
enemy 0, ...]``; a dead unit has only ``stop``).  ``reward`` is the allies' shared SMAX
reward (the enemies' health lost this step as a fraction of their max health, divided by
the number of enemies, plus ``won_battle_bonus`` = 1 on a win), scaled as SMAC scales its
reward (``reward_scale_rate``, 20 in the reference): the largest possible episode return,
all enemy health plus the win bonus, becomes ``env.args.reward_scale_rate`` (default 20; a
lica key, not passed to SMAX).  ``terminated`` = the battle ended (all allies or all
enemies dead); ``won`` = all enemies dead and at least one ally alive (SMAX's own win
rule, draws are possible); ``truncated`` = ``episode_limit`` steps reached without a
battle end.  ``episode_limit: null`` means SMAX's own limit (``max_steps``, 100 by
default, or ``args.max_steps``); a number is also passed to SMAX as ``max_steps``.  SMAX
is not StarCraft II: its numbers do not compare with SMAC's (README, *Environments*); of
the paper's maps it has ``2s3z``, ``5m_vs_6m`` and ``3s5z_vs_3s6z``, and the others raise
an error naming them (:data:`SMAC_ONLY_MAPS`).

**Contract details.**

* ``reset(seeds)``: env ``i`` is reset with PRNG key ``[seed_i >> 32, seed_i & 0xffffffff]``
  (uint32), which equals ``jax.random.PRNGKey(seed_i)`` for ``0 <= seed_i < 2**32`` and
  keeps 64-bit seeds distinct (``jax.random.PRNGKey`` truncates them to 32 bits without
  x64).  Same seeds -> same episodes, whatever the batch composition.
* ``step(actions, active)`` runs every env in one vmapped call but only *commits* the
  new state (env state, PRNG key, step counter) of active envs: an inactive env stays
  exactly where it was (no auto-reset, JaxMARL's auto-resetting ``env.step`` is never
  used; ``env.step_env`` is), and its rows in the result are unspecified.
* ``terminated`` (a real end) and ``truncated`` (the time limit) are never both true:
  a battle that ends on the limit step is ``terminated``.
* Arrays come back as writable numpy: float32 ``obs``/``state``/``reward``, bool
  ``avail``/``terminated``/``truncated``/``won``.
* The jitted reset and step are compiled by the first ``reset``, before it returns, so
  the first timed step is fast.  Each is called twice there: a vmapped step fed its own
  output can recompile on the second call (weak types / committed arrays); here the
  carry keeps fixed dtypes and the jit cache holds one entry each after warm-up (checked
  in the tests).  Training's collector (:mod:`lica.rollout.jax_collector`) does not use
  them: it traces :meth:`JaxVecEnv.reset_batch` and :meth:`JaxVecEnv.step_batch` into one
  whole-batch program of its own (``traceable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lica.config import EnvConfig
from lica.envs.base import EnvInfo, Observation, VecEnv, VecStep

# Note: ``import jaxmarl`` prints two lines about optional "submoduled environments" to
# stdout; contextlib.redirect_stdout does not silence them (sys.stdout is swapped back
# during jaxmarl's import), so they are left alone.
from jaxmarl.environments.mpe import SimpleSpreadMPE
from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

__all__ = ["JaxVecEnv", "make_vec_env", "smax_map_names", "SPREAD_SCENARIO"]

SPREAD_SCENARIO = "spread"
SPREAD_DEFAULT_LIMIT = 25  # JaxMARL MPE MAX_STEPS
SPREAD_N_ACTIONS = 5
# Maps of the paper without a SMAX counterpart (named in the error message).
SMAX_REWARD_SCALE_RATE = 20.0  # SMAC's reward_scale_rate in the reference (docs/algorithm.md §7)
SMAC_ONLY_MAPS = ("1c3s5z", "MMM2", "2c_vs_64zg")


def smax_map_names() -> list[str]:
    """Names of the SMAX scenarios registered in JaxMARL (``register_scenario`` adds more)."""
    return sorted(MAP_NAME_TO_SCENARIO)


# --------------------------------------------------------------------------- adapters
# An adapter turns one JaxMARL env into two pure, unbatched functions:
#   reset_one(key)                -> env_state, (obs (n,O), state (S,), avail (n,A))
#   step_one(key, env_state, act) -> env_state, (obs, state, avail, reward, terminated, won)
# JaxVecEnv vmaps and jits them and adds the PRNG keys, step counter and active mask.


@dataclass(frozen=True)
class _Adapter:
    env: Any
    agents: tuple[str, ...]
    n_actions: int
    episode_limit: int
    reports_wins: bool
    reset_one: Callable
    step_one: Callable


def _spread_adapter(cfg: EnvConfig) -> _Adapter:
    if cfg.n_agents is None or cfg.n_agents < 1:
        raise ValueError(f"env.scenario=spread needs env.n_agents >= 1, got {cfg.n_agents}.")
    args = dict(cfg.args or {})
    for bad, why in (("num_agents", "set env.n_agents"),
                     ("max_steps", "set env.episode_limit"),
                     ("local_ratio", "the team reward here does not use JaxMARL's per-agent "
                                     "rewards, so local_ratio would have no effect"),
                     ("action_type", "only discrete actions are supported")):
        if bad in args:
            raise ValueError(f"env.args.{bad} is not accepted by the jax spread env: {why}.")
    n = int(cfg.n_agents)
    args.setdefault("num_landmarks", n)
    limit = SPREAD_DEFAULT_LIMIT if cfg.episode_limit is None else int(cfg.episode_limit)
    # JaxMARL's max_steps only drives its own (ignored) done flag; keep it past our limit.
    env = SimpleSpreadMPE(num_agents=n, max_steps=limit + 1, **args)
    agents = tuple(env.agents)
    n_landmarks = env.num_landmarks
    pair_i, pair_j = np.triu_indices(n, k=1)
    pair_i, pair_j = jnp.asarray(pair_i), jnp.asarray(pair_j)

    def team_reward(st):
        agent_pos = st.p_pos[:n]  # (n, 2)
        landmark_pos = st.p_pos[n:n + n_landmarks]  # (L, 2)
        dist = jnp.linalg.norm(landmark_pos[:, None, :] - agent_pos[None, :, :], axis=-1)
        cover = -jnp.sum(jnp.min(dist, axis=1))  # JaxMARL's global_rew
        if pair_i.shape[0] == 0:
            return cover
        collide = jax.vmap(env.is_collision, in_axes=(0, 0, None))(pair_i, pair_j, st)
        return cover - jnp.sum(collide.astype(jnp.float32))

    def observe(obs_dict):
        obs = jnp.stack([obs_dict[a] for a in agents]).astype(jnp.float32)
        avail = jnp.ones((n, SPREAD_N_ACTIONS), dtype=jnp.bool_)
        return obs, obs.reshape(-1), avail

    def reset_one(key):
        obs_dict, st = env.reset(key)
        return st, observe(obs_dict)

    def step_one(key, st, actions):
        obs_dict, st, _, _, _ = env.step_env(key, st, {a: actions[i] for i, a in enumerate(agents)})
        obs, state, avail = observe(obs_dict)
        false = jnp.zeros((), dtype=jnp.bool_)
        return st, (obs, state, avail, team_reward(st).astype(jnp.float32), false, false)

    return _Adapter(env, agents, SPREAD_N_ACTIONS, limit, False, reset_one, step_one)


def _smax_adapter(cfg: EnvConfig) -> _Adapter:
    name = cfg.scenario
    if name not in MAP_NAME_TO_SCENARIO:
        extra = ""
        if name in SMAC_ONLY_MAPS:
            extra = f" {name!r} is a SMAC map with no SMAX counterpart (use backend=smac)."
        raise ValueError(
            f"Unknown jax env scenario {name!r}.{extra} Known: {SPREAD_SCENARIO!r} (MPE "
            f"Cooperative Navigation) and the SMAX maps {smax_map_names()}."
        )
    args = dict(cfg.args or {})
    reward_scale_rate = float(args.pop("reward_scale_rate", SMAX_REWARD_SCALE_RATE))
    if reward_scale_rate <= 0:
        raise ValueError(f"env.args.reward_scale_rate must be > 0, got {reward_scale_rate}.")
    if "scenario" in args:
        raise ValueError("env.args.scenario is not accepted: set env.scenario to the map name.")
    if cfg.episode_limit is not None:
        if "max_steps" in args and int(args["max_steps"]) != int(cfg.episode_limit):
            raise ValueError(
                f"env.episode_limit={cfg.episode_limit} and env.args.max_steps="
                f"{args['max_steps']} disagree: set one of them (episode_limit: null "
                "means the env's own limit)."
            )
        args["max_steps"] = int(cfg.episode_limit)
    env = HeuristicEnemySMAX(scenario=map_name_to_scenario(name), **args)
    if getattr(env, "action_type", "discrete") != "discrete":
        raise ValueError("LICA needs discrete actions: env.args.action_type must be 'discrete'.")
    if cfg.n_agents is not None and int(cfg.n_agents) != env.num_agents:
        raise ValueError(
            f"env.n_agents={cfg.n_agents} but SMAX map {name!r} has {env.num_agents} allies: "
            "set env.n_agents=null (taken from the map) or the right number."
        )
    agents = tuple(env.agents)
    n_allies = env.num_allies
    limit = int(env.max_steps)
    state_scale = jnp.asarray(smax_state_scale(env), jnp.float32)
    reward_scale = reward_scale_rate / (1.0 + env.won_battle_bonus)  # max return -> reward_scale_rate

    def observe(obs_dict, st):
        obs = jnp.stack([obs_dict[a] for a in agents]).astype(jnp.float32)
        avail_dict = env.get_avail_actions(st)
        avail = jnp.stack([avail_dict[a] for a in agents]).astype(jnp.bool_)
        return obs, jnp.clip(obs_dict["world_state"].astype(jnp.float32) * state_scale, 0.0, 1.0), avail

    def reset_one(key):
        obs_dict, st = env.reset(key)
        return st, observe(obs_dict, st)

    def step_one(key, st, actions):
        obs_dict, st, rewards, _, _ = env.step_env(
            key, st, {a: actions[i] for i, a in enumerate(agents)})
        obs, state, avail = observe(obs_dict, st)
        alive = st.state.unit_alive
        allies_dead = ~jnp.any(alive[:n_allies])
        enemies_dead = ~jnp.any(alive[n_allies:])
        terminated = allies_dead | enemies_dead
        won = enemies_dead & ~allies_dead
        reward = rewards[agents[0]].astype(jnp.float32) * reward_scale  # all allies share it
        return st, (obs, state, avail, reward, terminated, won)

    return _Adapter(env, agents, env.num_ally_actions, limit, True, reset_one, step_one)


def smax_state_scale(env: Any) -> np.ndarray:
    """Per-entry factors that bring SMAX's world state into [0, 1] (see the module doc):
    ``[unit features] * units + [team ids] * units + [type ids] * units`` (allies and
    enemies), unit features ``health, x, y, weapon cooldown, type one-hot``."""
    features = list(env.own_features)
    unit = np.ones(len(features))
    unit[features.index("position_x")] = 1.0 / env.map_width
    unit[features.index("position_y")] = 1.0 / env.map_height
    unit[features.index("weapon_cooldown")] = 1.0 / float(np.max(env.unit_type_weapon_cooldowns))
    n = env.num_allies + env.num_enemies
    type_ids = np.full(n, 1.0 / max(len(env.unit_type_names) - 1, 1))
    return np.concatenate([np.tile(unit, n), np.ones(n), type_ids])


def _make_adapter(cfg: EnvConfig) -> _Adapter:
    if cfg.scenario == SPREAD_SCENARIO:
        return _spread_adapter(cfg)
    return _smax_adapter(cfg)


# --------------------------------------------------------------------------- vec env


def seeds_to_keys(seeds: np.ndarray) -> np.ndarray:
    """uint32 PRNG keys ``[seed >> 32, seed & 0xffffffff]`` (= ``jax.random.PRNGKey(seed)``
    for 32-bit seeds)."""
    seeds = np.asarray(seeds)
    if seeds.dtype.kind not in "iu":
        if not np.all(np.equal(np.mod(seeds, 1), 0)):
            raise ValueError(f"reset seeds must be integers, got {seeds!r}")
        seeds = seeds.astype(np.int64)
    if seeds.dtype.kind == "i" and np.any(seeds < 0):
        raise ValueError(f"reset seeds must be >= 0, got {seeds!r}")
    seeds = seeds.astype(np.uint64)
    return np.stack([(seeds >> np.uint64(32)).astype(np.uint32),
                     (seeds & np.uint64(0xFFFFFFFF)).astype(np.uint32)], axis=-1)


class JaxVecEnv(VecEnv):
    """``num_envs`` JaxMARL environments in one jitted, vmapped program (see module doc)."""

    traceable = True  # reset_batch/step_batch are pure JAX: the fused collector traces them

    def __init__(self, adapter: _Adapter, num_envs: int, scenario: str = "") -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.scenario = scenario
        self.agents = adapter.agents
        self._adapter = adapter
        self._limit = adapter.episode_limit
        self._n_agents = len(adapter.agents)
        self._carry = None  # (env_state, keys, t) on device; None until reset
        self._reset_fn = jax.jit(self.reset_batch)
        self._step_fn = jax.jit(self.step_batch)

        # Static shapes without running anything.
        _, (obs, state, avail) = jax.eval_shape(adapter.reset_one, jax.random.PRNGKey(0))
        self.info = EnvInfo(
            n_agents=self._n_agents,
            n_actions=int(avail.shape[-1]),
            obs_dim=int(obs.shape[-1]),
            state_dim=int(state.shape[-1]),
            episode_limit=int(self._limit),
            reports_wins=adapter.reports_wins,
        )
        if self.info.n_actions != adapter.n_actions:  # pragma: no cover - JaxMARL changed
            raise RuntimeError(f"avail width {self.info.n_actions} != {adapter.n_actions} actions")
        self._warmed_up = False  # reset/step compile on the first reset (the fused rollout never needs them)

    # -- pure programs (batched over envs; jitted here, and traced into the fused
    #    whole-episode rollout of lica.rollout.jax_collector) --------------------------
    def reset_batch(self, keys):
        """uint32 keys ``(N, 2)`` -> carry ``(env_state, keys, t)``, ``(obs, state, avail)``."""
        split = jax.vmap(jax.random.split)(keys)  # (N, 2, 2)
        env_state, (obs, state, avail) = jax.vmap(self._adapter.reset_one)(split[:, 0])
        t = jnp.zeros((keys.shape[0],), dtype=jnp.int32)
        return (env_state, split[:, 1], t), (obs, state, avail)

    def step_batch(self, carry, packed):
        """One step of every env: ``carry``, ``packed`` -> new carry, ``(obs, state, avail,
        reward, terminated, truncated, won)``.  ``packed``: int32 ``(N, n_agents + 1)`` =
        actions then the active flag (one host->device transfer)."""
        env_state, keys, t = carry
        actions, active = packed[:, :-1], packed[:, -1].astype(jnp.bool_)
        split = jax.vmap(jax.random.split)(keys)
        new_state, (obs, state, avail, reward, terminated, won) = jax.vmap(
            self._adapter.step_one)(split[:, 1], env_state, actions)
        t_new = t + 1
        truncated = (t_new >= self._limit) & ~terminated

        def keep_active(new, old):
            mask = active.reshape(active.shape + (1,) * (new.ndim - 1))
            return jnp.where(mask, new, old)

        new_carry = jax.tree.map(keep_active, (new_state, split[:, 0], t_new), carry)
        return new_carry, (obs, state, avail, reward, terminated, truncated, won)

    # -- VecEnv API ---------------------------------------------------------------------
    def reset(self, seeds: np.ndarray) -> Observation:
        keys = self.reset_keys(seeds)
        if not self._warmed_up:
            self._warm_up()
        self._carry, out = self._reset_fn(keys)
        obs, state, avail = _to_numpy(jax.device_get(out))
        return Observation(obs, state, avail)

    def reset_keys(self, seeds: np.ndarray) -> np.ndarray:
        """The PRNG keys :meth:`reset_batch` takes for one reset seed per env."""
        seeds = np.asarray(seeds).reshape(-1)
        if seeds.shape[0] != self.num_envs:
            raise ValueError(
                f"reset needs one seed per env ({self.num_envs}), got {seeds.shape[0]}")
        return seeds_to_keys(seeds)

    def step(self, actions: np.ndarray, active: np.ndarray) -> VecStep:
        if self._carry is None:
            raise RuntimeError("JaxVecEnv.step called before reset(seeds)")
        actions = np.asarray(actions)
        active = np.asarray(active).reshape(-1)
        if actions.shape != (self.num_envs, self._n_agents) or active.shape != (self.num_envs,):
            raise ValueError(
                f"step expects actions {(self.num_envs, self._n_agents)} and active "
                f"({self.num_envs},), got {actions.shape} and {active.shape}"
            )
        packed = np.empty((self.num_envs, self._n_agents + 1), dtype=np.int32)
        packed[:, :-1] = actions
        packed[:, -1] = active
        self._carry, out = self._step_fn(self._carry, packed)
        return VecStep(*_to_numpy(jax.device_get(out)))

    def close(self) -> None:
        self._carry = None

    # -- internals ----------------------------------------------------------------------
    def _warm_up(self) -> None:
        """Compile reset and step (run twice each, so a recompilation on the second
        call would also happen here, not in a timed loop), then forget the warm-up
        episode."""
        self._warmed_up = True
        seeds = np.arange(self.num_envs)
        active = np.ones(self.num_envs, dtype=bool)
        for _ in range(2):
            first = self.reset(seeds)
            # the first available action of every agent (SMAX: stop is always available)
            actions = np.argmax(first.avail, axis=-1)
            for _ in range(2):
                self.step(actions, active)
        self._carry = None


def _to_numpy(arrays: tuple) -> tuple:
    """Writable numpy copies (``device_get`` returns read-only views on CPU)."""
    return tuple(np.array(a) for a in arrays)


def make_vec_env(cfg: EnvConfig, num_envs: int) -> JaxVecEnv:
    """Build ``num_envs`` batched JaxMARL envs for ``cfg`` (backend ``jax``)."""
    return JaxVecEnv(_make_adapter(cfg), num_envs, scenario=cfg.scenario)
