"""One run's assembly, shared by :mod:`lica.train` and :mod:`lica.bench`.

:class:`Experiment` seeds the process (:mod:`lica.seeding`), builds the rollout DataModule,
the LightningModule of the configured algorithm (:data:`lica.config.ALGORITHMS`), hands
the module's policy to the DataModule, and makes the evaluation callback
(:class:`lica.callbacks.Evaluation`); :meth:`Experiment.trainer` makes the Lightning
``Trainer`` with that callback first and the caller's callbacks (checkpoints, progress,
the bench's timer) after it.  In that order, a run draws the same random numbers however
it is started.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from lica.algos import build_module
from lica.algos.base import target_schedule_problem
from lica.callbacks import Evaluation
from lica.config import TrainConfig
from lica.rollout.datamodule import RolloutDataModule
from lica.runtime import keep_freed_memory
from lica.seeding import seed_everything

log = logging.getLogger("lica")


class Experiment:
    """The parts of one run (see the module doc); :meth:`close` stops its env workers."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        seed_everything(cfg.seed)
        torch.set_num_threads(cfg.trainer.torch_threads)
        keep_freed_memory()
        self.datamodule = RolloutDataModule(cfg.env, cfg.rollout, cfg.seed, cfg.trainer.max_env_steps)
        self.module = build_module(cfg.algo, self.datamodule.env_info)
        self.datamodule.use_policy(self.module.rollout_policy)
        self.evaluation = Evaluation(cfg.rollout.eval_interval, cfg.trainer.max_env_steps)
        problem = target_schedule_problem(cfg.algo, self.module.critic_steps_per_batch, cfg.trainer.max_env_steps,
                                          cfg.rollout.batch_episodes, self.datamodule.env_info.episode_limit)
        if problem:
            log.warning(problem)

    def trainer(self, run_dir: Path, loggers: Sequence[Logger], callbacks: Sequence[Callback] = (),
                max_epochs: int = 1, progress_bar: bool = False, plugins: Sequence[Any] = ()) -> pl.Trainer:
        """The Lightning Trainer of this run.  One epoch is the whole env-step budget (a run
        resumed after its epoch ended, to extend the budget, needs one more)."""
        t = self.cfg.trainer
        return pl.Trainer(
            accelerator=t.accelerator, devices=t.devices, max_epochs=max_epochs, precision=t.precision,
            logger=list(loggers) or False, callbacks=[self.evaluation, *callbacks], log_every_n_steps=1,
            enable_progress_bar=progress_bar, enable_model_summary=False, enable_checkpointing=False,
            num_sanity_val_steps=0, default_root_dir=str(run_dir), plugins=list(plugins),
        )

    def fit(self, trainer: pl.Trainer, ckpt_path: Path | None = None) -> None:
        trainer.fit(self.module, datamodule=self.datamodule, ckpt_path=ckpt_path)

    def close(self) -> None:
        self.datamodule.teardown("fit")
