"""The environment protocol every lica backend implements.

Two levels:

* :class:`MultiAgentEnv` -- one environment: ``reset(seed)`` returns the first
  :class:`Observation` (observations, state and available actions together) and
  ``step(actions)`` returns ``(next Observation, reward, terminated, truncated, info)``;
  ``get_env_info()`` describes it (:class:`EnvInfo`).  mpe2 and the SMAC adapter
  implement it; the worker pool (:mod:`lica.envs.vec`) runs many of them in worker
  processes.
* :class:`VecEnv` -- ``num_envs`` environments stepped in lock-step with batched numpy
  in and out.  The collector only ever talks to a ``VecEnv``.  Natively batched
  backends (JaxMARL) implement it directly.

Conventions (docs/algorithm.md §1, §6):

* ``obs``: float32 ``(n_agents, obs_dim)``; ``state``: float32 ``(state_dim,)``;
  ``avail``: bool/uint8 ``(n_agents, n_actions)``, at least one action available for
  every agent while the episode runs.
* ``reward`` is the one shared team reward.
* ``terminated`` is a true end of the episode (no bootstrap).  ``truncated`` is the
  time limit (``episode_limit`` steps).  Whether a time-out is stored as terminal is
  the learner's choice (``algo.bootstrap_on_timeout``), not the env's.
* ``info`` may hold ``battle_won`` (bool) and any scalar per-episode statistics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True)
class EnvInfo:
    """Static description of an environment (SMAC's ``get_env_info`` in dataclass form)."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    reports_wins: bool = False


class Observation(NamedTuple):
    """What the agents and the critic see at one time step of one environment."""

    obs: np.ndarray  # (n_agents, obs_dim) float32
    state: np.ndarray  # (state_dim,) float32
    avail: np.ndarray  # (n_agents, n_actions) bool


class MultiAgentEnv(ABC):
    """One cooperative multi-agent environment with a shared reward."""

    @abstractmethod
    def get_env_info(self) -> EnvInfo: ...

    @abstractmethod
    def reset(self, seed: int | None = None) -> Observation:
        """Start a new episode; ``seed`` (when given) fixes everything random in it."""

    @abstractmethod
    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply one joint action ``(n_agents,)`` int.

        Returns ``(next_observation, reward, terminated, truncated, info)``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release external resources (a game process, a window)."""


class VecStep(NamedTuple):
    """Batched result of :meth:`VecEnv.step` for all ``num_envs`` environments."""

    obs: np.ndarray  # (N, n_agents, obs_dim) float32
    state: np.ndarray  # (N, state_dim) float32
    avail: np.ndarray  # (N, n_agents, n_actions) bool
    reward: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    won: np.ndarray  # (N,) bool -- meaningful only when EnvInfo.reports_wins


class VecEnv(ABC):
    """``num_envs`` environments stepped in lock-step.

    ``step(actions, active)`` advances only the environments whose ``active`` flag is
    set (an environment whose episode has ended waits for the next ``reset``); rows of
    inactive environments in the result are unspecified and must be ignored.
    """

    info: EnvInfo
    num_envs: int
    traceable: bool = False  # reset_batch/step_batch can be traced by JAX (lica.rollout.make_collector)

    @abstractmethod
    def reset(self, seeds: np.ndarray) -> Observation:
        """Reset every environment, env ``i`` with ``seeds[i]``; returns batched arrays
        ``obs (N, n, O)``, ``state (N, S)``, ``avail (N, n, A)``."""

    @abstractmethod
    def step(self, actions: np.ndarray, active: np.ndarray) -> VecStep:
        """``actions``: ``(N, n_agents)`` int; ``active``: ``(N,)`` bool."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
