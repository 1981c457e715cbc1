"""Shared fixtures: Hydra composition of the real ``lica/conf/`` tree."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig

from lica.config import CONF_DIR as _CONF_DIR
from lica.config import compose

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (session fixture: the real cluster)

CONF_DIR = str(_CONF_DIR)

# Small, fast settings for end-to-end runs on 2 cores.
TINY = [
    "trainer.max_env_steps=1600", "rollout.batch_episodes=4", "rollout.test_episodes=2",
    "rollout.eval_interval=800", "trainer.enable_progress_bar=false", "env.episode_limit=10",
]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``lica/conf/train.yaml`` exactly as ``python -m lica.train`` does."""
    return compose(overrides or [])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The SLURM tests share one cluster (a session fixture, started once per process), so under
    pytest-xdist (``make test``: ``-n auto --dist loadgroup``) they all run in one worker."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("slurm"):
            item.add_marker(pytest.mark.xdist_group("slurm"))
