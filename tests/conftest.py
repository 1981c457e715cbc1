"""Shared fixtures: Hydra composition of the real ``lica/conf/`` tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from lica.config import register_configs

from tests.slurm_cluster import slurm_cluster  # noqa: F401  (session fixture: the real cluster)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "lica" / "conf")

# Small, fast settings for end-to-end runs on 2 cores.
TINY = [
    "trainer.max_env_steps=1600", "rollout.batch_episodes=4", "rollout.test_episodes=2",
    "rollout.eval_interval=800", "trainer.enable_progress_bar=false", "env.episode_limit=10",
]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``lica/conf/train.yaml`` exactly as ``python -m lica.train`` does."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return compose(config_name="train", overrides=overrides or [], return_hydra_config=False)


@pytest.fixture
def compose_cfg():
    return compose_config
