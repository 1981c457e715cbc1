"""On-policy rollouts: the collectors, the episode batch and the rollout DataModule."""

from __future__ import annotations

from lica.envs.base import VecEnv
from lica.rollout.collector import Collector


def make_collector(env: VecEnv) -> Collector:
    """The collector for ``env``: for an env whose batched reset and step JAX can trace
    (``env.traceable``, the jax backend), the whole batch as one jitted program
    (:class:`lica.rollout.jax_collector.JaxCollector`); else the step-wise loop."""
    if env.traceable:
        from lica.rollout.jax_collector import JaxCollector  # needs jax, which such an env runs on

        return JaxCollector(env)
    return Collector(env)
