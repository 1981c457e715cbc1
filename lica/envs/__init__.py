"""Environment backends and the one function that builds a batched env from config.

Each backend module exposes either

* ``make_env(cfg: EnvConfig) -> MultiAgentEnv`` -- one environment; lica runs
  ``num_envs`` of them in the worker pool (:class:`lica.envs.vec.WorkerPoolVecEnv`), or
* ``make_vec_env(cfg: EnvConfig, num_envs: int) -> VecEnv`` -- a natively batched
  backend (JaxMARL: jit + vmap, no worker processes).
"""

from __future__ import annotations

import importlib
from functools import partial

from lica.config import Backend, EnvConfig
from lica.envs.base import EnvInfo, MultiAgentEnv, Observation, VecEnv, VecStep

# backend -> (module, extra that provides it, or None when always installed)
BACKENDS: dict[Backend, tuple[str, str | None]] = {
    Backend.mpe: ("lica.envs.mpe", None),
    Backend.jax: ("lica.envs.jax", "jax"),
    Backend.smac: ("lica.envs.smac", "smac"),
}

__all__ = ["BACKENDS", "EnvInfo", "MultiAgentEnv", "Observation", "VecEnv", "VecStep",
           "backend_module", "make_single_env", "make_vec_env"]


def backend_module(cfg: EnvConfig):
    """The module of ``cfg.backend`` (an env config built in code is checked here; a
    composed one already was, by the schema)."""
    try:
        module_name, extra = BACKENDS[Backend(cfg.backend)]
    except ValueError:
        raise ValueError(f"Unknown env backend '{cfg.backend}'. Choose one of {sorted(b.value for b in Backend)} "
                         "(e.g. env=spread, env=smax_2s3z, env=smac_2s3z).") from None
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        if extra is None:
            raise
        raise ImportError(
            f"env backend '{cfg.backend}' needs the optional extra {extra!r}: "
            f"pip install -e '.[{extra}]'  (missing: {err.name or err})"
        ) from err


def make_single_env(cfg: EnvConfig) -> MultiAgentEnv:
    """Build one environment (also the picklable factory the worker processes call)."""
    return backend_module(cfg).make_env(cfg)


def make_vec_env(cfg: EnvConfig, num_envs: int, num_workers: int = 0,
                 start_method: str = "spawn", timeout_s: float = 120.0) -> VecEnv:
    """``num_envs`` environments in lock-step: natively batched where the backend is,
    else ``num_workers`` processes each owning ``num_envs / num_workers`` envs."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}: set rollout.batch_episodes >= 1.")
    module = backend_module(cfg)
    if hasattr(module, "make_vec_env"):
        return module.make_vec_env(cfg, num_envs)
    from lica.envs.vec import WorkerPoolVecEnv

    return WorkerPoolVecEnv(partial(make_single_env, cfg), num_envs, num_workers,
                            start_method=start_method, timeout_s=timeout_s)
