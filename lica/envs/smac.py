"""StarCraft II (SMAC) backend: :class:`SMACEnv` wraps ``smac.env.StarCraft2Env``.

SMAC is the StarCraft Multi-Agent Challenge from ``git+https://github.com/oxwhirl/smac.git``
(never PyPI ``smac``: that is SMAC3, an unrelated hyper-parameter optimiser).  It drives
the StarCraft II game (the paper used 4.10, docs/algorithm.md §7), found through ``SC2PATH``;
``make sc2`` (``slurm/install_sc2.sh``) installs both.  Nothing SMAC or SC2 is imported at
module import time, so ``import lica.envs.smac`` works on machines without them.

One :class:`SMACEnv` owns one SC2 process (SMAC launches it at the first ``reset``); the
worker pool runs one ``SMACEnv`` per env slot.

Mapping SMAC onto :class:`lica.envs.base.MultiAgentEnv`:

* ``cfg.scenario`` is the map name (case-sensitive: ``MMM2``).  The paper's maps are in
  :data:`PAPER_MAPS`; any other map the installed SMAC knows is allowed too.
* ``cfg.args`` are ``StarCraft2Env`` keyword arguments merged over the reference
  settings :data:`REFERENCE_ENV_ARGS` (docs/algorithm.md §7).  One extra key is lica's own:
  ``env_cls: "module:Class"`` replaces ``smac.env.StarCraft2Env`` by another class with
  the same interface (the tests' stand-in ``tests.smac_standin:StarCraft2Env``); it is a
  config value, so it also reaches envs built in spawned worker processes.
* ``cfg.episode_limit``: ``None`` keeps the map's own limit (the benchmark); an integer
  overrides it (sets ``StarCraft2Env.episode_limit``, which SMAC's ``step`` reads).
* ``cfg.n_agents`` must be ``None`` or the map's team size (the map decides).
* ``step`` returns ``truncated=True, terminated=False`` for a time-out.  SMAC itself
  reports a time-out in ``info["episode_limit"]`` only when ``continuing_episode=True``;
  with the reference ``continuing_episode=False`` it returns ``terminated=True`` and
  counts it in ``StarCraft2Env.timeouts``, which the adapter reads.  An episode that SMAC
  aborted because the SC2 process crashed and was relaunched (``step`` returning
  ``(0, True, {})``) also comes out as ``truncated`` with ``info["sc2_restart"]=True``.
  ``info`` always holds ``battle_won`` and ``episode_limit`` (bools).
* Seeding: SMAC seeds the game once, when it creates it (``StarCraft2Env(seed=...)``; the
  game is created at the first ``reset``), and cannot reseed an episode without
  relaunching SC2 (seconds per episode).  So ``SMACEnv(cfg, seed=s)`` seeds the game,
  and ``reset(seed)`` honours ``seed`` only before the game is launched (the first
  ``reset``: the process-less ``StarCraft2Env`` object is rebuilt with that seed, which
  is free).  Later ``reset(seed)`` calls record the seed in ``last_reset_seed`` and
  ignore it; the game's RNG runs on from the launch seed.  (SC2 is not bit-for-bit
  reproducible anyway.)
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lica.config import EnvConfig
from lica.envs.base import EnvInfo, MultiAgentEnv, Observation

log = logging.getLogger(__name__)

__all__ = ["PAPER_MAPS", "REFERENCE_ENV_ARGS", "SC2NotFoundError", "SMACEnv",
           "check_sc2_install", "install_info", "make_env", "sc2_path", "sc2_version"]

SMAC_PIP = 'pip install "smac @ git+https://github.com/oxwhirl/smac.git"'

# The paper's maps (docs/algorithm.md §8) and their difficulty class.
PAPER_MAPS: dict[str, str] = {
    "2s3z": "Easy", "1c3s5z": "Easy",
    "5m_vs_6m": "Hard", "2c_vs_64zg": "Hard",
    "MMM2": "Super Hard", "3s5z_vs_3s6z": "Super Hard",
}

# StarCraft2Env keyword arguments of the reference code (docs/algorithm.md §7; PyMARL's sc2.yaml).
# Only keywords every SMAC release accepts; add newer ones (obs_timestep_number, ...)
# through cfg.args.
REFERENCE_ENV_ARGS: dict[str, Any] = {
    "difficulty": "7",
    "step_mul": 8,
    "move_amount": 2,
    "game_version": None,  # None: the newest Versions/Base* in SC2PATH
    "continuing_episode": False,
    "obs_all_health": True,
    "obs_own_health": True,
    "obs_last_action": False,
    "obs_pathing_grid": False,
    "obs_terrain_height": False,
    "obs_instead_of_state": False,
    "state_last_action": True,
    "reward_sparse": False,
    "reward_only_positive": True,
    "reward_death_value": 10,
    "reward_win": 200,
    "reward_defeat": 0,
    "reward_negative_scale": 0.5,
    "reward_scale": True,
    "reward_scale_rate": 20,
    "replay_dir": "",
    "replay_prefix": "",
    "debug": False,
}

# SC2 binary build (the Versions/Base<build> folder) -> game version (pysc2's table).
SC2_BUILDS: dict[int, str] = {
    55958: "3.16.1", 56787: "3.17.0", 57507: "3.19.0", 58400: "4.0.0", 59877: "4.0.2",
    60321: "4.1.2", 62347: "4.2.0", 62848: "4.2.1", 63454: "4.3.0", 64469: "4.4.0",
    65094: "4.4.1", 65384: "4.5.0", 65895: "4.5.1", 66668: "4.6.0", 67188: "4.6.1",
    69232: "4.6.2", 70154: "4.7.0/4.7.1", 71061: "4.8.0", 71523: "4.8.1", 71663: "4.8.2",
    72282: "4.8.3", 73286: "4.8.4", 73559: "4.8.5", 73620: "4.8.6", 74071: "4.9.0",
    74456: "4.9.1", 74741: "4.9.2", 75025: "4.9.3", 75689: "4.10", 75800: "4.10.1",
    76052: "4.10.2", 76114: "4.10.3", 76811: "4.10.4", 77379: "4.11.0/4.11.1",
    77535: "4.11.2", 77661: "4.11.3", 78285: "4.11.4", 79998: "4.12.0", 80188: "4.12.1",
    80949: "5.0.0", 81009: "5.0.1", 81102: "5.0.2", 81433: "5.0.3",
}


class SC2NotFoundError(FileNotFoundError):
    """StarCraft II (or the SMAC maps) is not where ``SC2PATH`` says."""


# --------------------------------------------------------------------------- SC2 install
def sc2_path() -> Path:
    """Where pysc2 looks for StarCraft II: ``$SC2PATH``, else the platform default."""
    env = os.environ.get("SC2PATH")
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        return Path("/Applications/StarCraft II")
    if sys.platform == "win32":
        return Path("C:/Program Files (x86)/StarCraft II")
    return Path("~/StarCraftII").expanduser()


def _builds(path: Path) -> list[int]:
    versions = path / "Versions"
    if not versions.is_dir():
        return []
    out = []
    for child in versions.iterdir():
        if child.is_dir() and child.name.startswith("Base") and child.name[4:].isdigit():
            out.append(int(child.name[4:]))
    return sorted(out)


def sc2_version(path: str | os.PathLike | None = None) -> str | None:
    """The StarCraft II version pysc2 launches by default from ``path`` (``SC2PATH``):
    the newest ``Versions/Base<build>`` folder, as a game version where the build is
    known (``Base75689`` -> ``"4.10"``), else ``"Base<build>"``; ``None`` without an
    installation.  Log it with every SMAC run (the paper used 4.10)."""
    builds = _builds(Path(path) if path is not None else sc2_path())
    if not builds:
        return None
    return SC2_BUILDS.get(builds[-1], f"Base{builds[-1]}")


def install_info() -> dict[str, Any]:
    """SC2/SMAC facts for a run's hyper-parameters (``sc2_version`` et al.); never raises."""
    path = sc2_path()
    builds = _builds(path)
    try:
        from importlib.metadata import version as dist_version

        smac_dist = dist_version("smac")
    except Exception:  # noqa: BLE001 - not installed / broken metadata
        smac_dist = None
    return {"sc2_path": str(path), "sc2_version": sc2_version(path),
            "sc2_build": builds[-1] if builds else None, "smac_dist_version": smac_dist}


def check_sc2_install(map_name: str | None = None) -> Path:
    """Raise :class:`SC2NotFoundError` unless StarCraft II (and ``map_name``'s SMAC map)
    is installed where pysc2 will look; return that folder."""
    path = sc2_path()
    where = f"SC2PATH={os.environ['SC2PATH']!r}" if os.environ.get("SC2PATH") \
        else f"SC2PATH is not set, so the default {str(path)!r} was used"
    fix = ("Install StarCraft II 4.10 and the SMAC maps with `make sc2` "
           "(slurm/install_sc2.sh), or set SC2PATH to an existing StarCraftII folder.")
    if not path.is_dir():
        raise SC2NotFoundError(f"StarCraft II not found: {path} does not exist ({where}). {fix}")
    if not _builds(path):
        raise SC2NotFoundError(
            f"StarCraft II not found: {path} has no Versions/Base* game binary ({where}). {fix}")
    if map_name is not None:
        map_file = path / "Maps" / "SMAC_Maps" / f"{map_name}.SC2Map"
        if not map_file.is_file():
            raise SC2NotFoundError(
                f"SMAC map missing: {map_file} ({where}). The SMAC maps belong in "
                f"$SC2PATH/Maps/SMAC_Maps; `make sc2` (slurm/install_sc2.sh) installs them.")
    return path


# ------------------------------------------------------------------------- SMAC import
def _import_smac() -> tuple[type, Callable[[str], dict]]:
    """``(StarCraft2Env, get_map_params)`` from the real SMAC, or a clear ImportError."""
    try:
        import smac  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "env.backend=smac needs SMAC (the StarCraft Multi-Agent Challenge), which is "
            f"not installed. Install it with: {SMAC_PIP}  -- NOT `pip install smac` (PyPI "
            "'smac' is SMAC3, an unrelated optimiser). StarCraft II itself and the SMAC "
            "maps: `make sc2` (slurm/install_sc2.sh), then set SC2PATH."
        ) from err
    try:
        from smac.env import StarCraft2Env
        from smac.env.starcraft2.maps import get_map_params
    except ImportError as err:
        if err.name in ("smac.env", "smac.env.starcraft2", "smac.env.starcraft2.maps"):
            where = getattr(sys.modules.get("smac"), "__file__", None)
            raise ImportError(
                f"The installed 'smac' package ({where}) is not the StarCraft Multi-Agent "
                "Challenge (it has no smac.env; PyPI 'smac' is SMAC3, a hyper-parameter "
                f"optimiser). Replace it: pip uninstall -y smac && {SMAC_PIP}"
            ) from err
        raise ImportError(
            f"SMAC is installed but failed to import ({err}); reinstall it with its "
            f"dependencies (pysc2, s2clientprotocol): {SMAC_PIP}"
        ) from err
    return StarCraft2Env, get_map_params


def _import_object(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"env.args.env_cls must be 'module:Class', got {spec!r}")
    return getattr(importlib.import_module(module), attr)


def _unknown_map_error(name: str, known: list[str] | None = None) -> ValueError:
    paper = ", ".join(f"{m} ({d})" for m, d in PAPER_MAPS.items())
    candidates = list(PAPER_MAPS) + list(known or [])
    close = [m for m in dict.fromkeys(candidates) if m.lower() == name.lower() and m != name]
    hint = f" Did you mean {close[0]!r}? Map names are case-sensitive." if close else ""
    return ValueError(
        f"Unknown SMAC map {name!r}.{hint} The paper's maps: {paper}. Any other map the "
        "installed SMAC knows is allowed too (`python -m smac.bin.map_list` lists them)."
    )


def _check_map(name: str, get_map_params: Callable[[str], dict] | None) -> None:
    if name not in PAPER_MAPS and name.lower() in {m.lower() for m in PAPER_MAPS}:
        raise _unknown_map_error(name)  # a case slip (mmm2): no SMAC needed to say so
    if get_map_params is None:
        return
    try:
        get_map_params(name)
    except KeyError:
        known = None
        try:
            from smac.env.starcraft2.maps import smac_maps

            known = list(smac_maps.get_smac_map_registry())
        except Exception:  # noqa: BLE001 - only for the suggestion
            pass
        raise _unknown_map_error(name, known) from None


# ----------------------------------------------------------------------------- the env
class SMACEnv(MultiAgentEnv):
    """One SMAC environment (one SC2 process) behind lica's env protocol.

    ``env_cls`` / ``get_map_params`` inject a ``StarCraft2Env``-compatible class and its
    map lookup instead of SMAC's (tests); with ``env_cls`` given, no SC2 installation
    check is made.  ``seed`` seeds the game (see the module docstring on seeding).
    """

    def __init__(self, cfg: EnvConfig, *, seed: int | None = None,
                 env_cls: type | None = None,
                 get_map_params: Callable[[str], dict] | None = None) -> None:
        args = {**REFERENCE_ENV_ARGS, **dict(cfg.args or {})}
        cls_spec = args.pop("env_cls", None)
        if env_cls is None and cls_spec:
            env_cls = _import_object(str(cls_spec))
        map_name = str(cfg.scenario)
        if args.pop("map_name", map_name) != map_name:
            raise ValueError("Set the SMAC map with env.scenario, not env.args.map_name.")
        arg_seed = args.pop("seed", None)
        self._seed = seed if seed is not None else arg_seed

        self.real_sc2 = env_cls is None
        if self.real_sc2:
            env_cls, get_map_params = _import_smac()
        _check_map(map_name, get_map_params)
        self.sc2_path: Path | None = check_sc2_install(map_name) if self.real_sc2 else None
        self.sc2_version: str | None = (
            (args["game_version"] or sc2_version(self.sc2_path)) if self.real_sc2 else None)

        self.map_name = map_name
        self._env_cls = env_cls
        self._env_kwargs = args
        try:
            self._env = self._build(self._seed)
        except KeyError as err:  # SMAC's get_map_params(map_name) inside the constructor
            if err.args and err.args[0] == map_name:
                raise _unknown_map_error(map_name) from None
            raise
        self._launched = False
        self.last_reset_seed: int | None = None
        self._closed = False

        raw = self._env.get_env_info()
        if cfg.n_agents is not None and int(cfg.n_agents) != int(raw["n_agents"]):
            raise ValueError(
                f"SMAC map {map_name} has {raw['n_agents']} agents, but env.n_agents="
                f"{cfg.n_agents}; set env.n_agents=null (the map decides the team size).")
        limit = int(raw["episode_limit"])
        if cfg.episode_limit is not None and int(cfg.episode_limit) != limit:
            log.warning("SMAC %s: episode_limit overridden %d -> %d (the benchmark uses %d)",
                        map_name, limit, int(cfg.episode_limit), limit)
            limit = int(cfg.episode_limit)
        self._episode_limit_override = limit if limit != int(raw["episode_limit"]) else None
        self._apply_limit()
        self._info = EnvInfo(n_agents=int(raw["n_agents"]), n_actions=int(raw["n_actions"]),
                             obs_dim=int(raw["obs_shape"]), state_dim=int(raw["state_shape"]),
                             episode_limit=limit, reports_wins=True)
        self._t = 0
        log.debug("SMAC map %s via %s.%s, SC2 %s at %s", map_name, env_cls.__module__,
                  env_cls.__qualname__, self.sc2_version, self.sc2_path)

    # -- construction helpers
    def _build(self, seed: int | None):
        return self._env_cls(map_name=self.map_name, seed=seed, **self._env_kwargs)

    def _apply_limit(self) -> None:
        if self._episode_limit_override is not None:
            self._env.episode_limit = self._episode_limit_override

    @property
    def smac_env(self):
        """The wrapped ``StarCraft2Env`` (for replays, ``get_stats``, debugging)."""
        return self._env

    # -- protocol
    def get_env_info(self) -> EnvInfo:
        return self._info

    def reset(self, seed: int | None = None) -> Observation:
        if seed is not None:
            seed = int(seed)
            self.last_reset_seed = seed
            if not self._launched and seed != self._seed:
                # SC2 not launched yet: rebuilding the StarCraft2Env object is free and
                # the game will be created with this seed.
                self._env.close()
                self._seed = seed
                self._env = self._build(seed)
                self._apply_limit()
        self._env.reset()
        self._launched = True
        self._t = 0
        return self._observe()

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        acts = np.asarray(actions).reshape(-1)
        if acts.shape[0] != self._info.n_agents:
            raise ValueError(f"expected {self._info.n_agents} actions, got shape {np.shape(actions)}")
        timeouts_before = getattr(self._env, "timeouts", None)
        reward, terminated, raw_info = self._env.step([int(a) for a in acts])
        self._t += 1
        raw_info = dict(raw_info or {})
        terminated = bool(terminated)
        # SMAC's step returns (0, True, {}) -- no "battle_won" key -- when the SC2 process
        # crashed and was relaunched; every normal step's info holds "battle_won".
        restarted = terminated and "battle_won" not in raw_info
        won = bool(raw_info.pop("battle_won", False))
        timed_out = bool(raw_info.pop("episode_limit", False))
        if terminated and not won and not timed_out and not restarted:
            timeouts_after = getattr(self._env, "timeouts", None)
            if timeouts_before is not None and timeouts_after is not None:
                timed_out = timeouts_after > timeouts_before
            else:  # an env without SMAC's counter: fall back to the step count
                timed_out = self._t >= self._info.episode_limit
        info: dict[str, Any] = {"battle_won": won, "episode_limit": timed_out}
        if restarted:
            info["sc2_restart"] = True
        for key, value in raw_info.items():  # dead_allies, dead_enemies, ... (scalars only)
            if np.isscalar(value):
                info[key] = value.item() if isinstance(value, np.generic) else value
        truncated = timed_out or restarted
        return self._observe(), float(reward), terminated and not truncated, truncated, info

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()

    # -- read-outs
    def _observe(self) -> Observation:
        n, info = self._info.n_agents, self._info
        obs = np.asarray(self._env.get_obs(), dtype=np.float32).reshape(n, info.obs_dim)
        state = np.asarray(self._env.get_state(), dtype=np.float32).reshape(info.state_dim)
        avail = np.asarray(self._env.get_avail_actions()).astype(bool).reshape(n, info.n_actions)
        return Observation(obs=obs, state=state, avail=avail)

    def get_stats(self) -> dict[str, Any]:
        """SMAC's running counters (battles won/played, time-outs, SC2 restarts)."""
        return dict(self._env.get_stats())


def make_env(cfg: EnvConfig) -> MultiAgentEnv:
    """Backend entry point (:func:`lica.envs.make_single_env`)."""
    return SMACEnv(cfg)
