"""Experiment loggers (Lightning's own) and the tags runs are compared by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger

from lica.config import TrainConfig


def build_loggers(cfg: TrainConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = []
    if cfg.logger.csv is not None:
        loggers.append(CSVLogger(save_dir=str(run_dir), name=cfg.logger.csv.name, version=""))
    return loggers


def run_tags(cfg: TrainConfig) -> dict[str, Any]:
    """The fields runs are grouped and compared by (logged as hyper-parameters)."""
    algo = cfg.algo
    return {"algo": algo.name, "critic": algo.critic, "entropy": algo.entropy,
            "entropy_coef": algo.entropy_coef if algo.entropy == "adaptive" else algo.beta,
            "actor_input": algo.actor_input, "env": f"{cfg.env.backend}:{cfg.env.scenario}", "seed": cfg.seed}
