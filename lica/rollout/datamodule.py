"""The on-policy rollout DataModule.

Its training "dataloader" is an iterator that collects B complete episodes (one per
training env) with the LightningModule's *current* policy each time it is advanced.
The LightningModule advances it inside ``training_step`` (``dataloader_iter``), so no
batch is ever collected before the previous update: Lightning's default one-batch
prefetch would make the data one update stale.  Iteration ends when the env-step
budget ``trainer.max_env_steps`` is spent.

Every episode's reset seed comes from ``SeedSequence([seed, stream, counter])``, so a
run is reproducible and a resumed run sees exactly the episodes the uninterrupted run
would have seen.  Evaluation envs have their own stream and never touch the training
sampler's generator.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch

from lica.config import EnvConfig, RolloutConfig
from lica.envs import make_vec_env
from lica.envs.base import EnvInfo, VecEnv
from lica.models.agents import MultiAgentPolicy
from lica.rollout.batch import EpisodeBatch
from lica.rollout.collector import Collector, EpisodeStats, make_collector

_TRAIN, _TEST = 0, 1


class RolloutDataModule(pl.LightningDataModule):
    def __init__(self, env: EnvConfig, rollout: RolloutConfig, seed: int, max_env_steps: int) -> None:
        super().__init__()
        if rollout.batch_episodes < 1:
            raise ValueError(f"rollout.batch_episodes must be >= 1, got {rollout.batch_episodes}.")
        self.env_cfg, self.cfg, self.seed, self.max_env_steps = env, rollout, seed, max_env_steps
        self.env_steps = 0
        self.batches = 0
        self.evaluations = 0
        self.generator = torch.Generator().manual_seed(seed)
        self._train: Collector | None = None
        self._test: Collector | None = None
        self.last_train_stats: EpisodeStats | None = None

    # -- environments ------------------------------------------------------------------
    def _vec_env(self, num_envs: int, num_workers: int) -> VecEnv:
        return make_vec_env(self.env_cfg, num_envs, num_workers, self.cfg.start_method, self.cfg.worker_timeout_s)

    @property
    def train_collector(self) -> Collector:
        if self._train is None:
            self._train = make_collector(self._vec_env(self.cfg.batch_episodes, self.cfg.num_workers))
        return self._train

    @property
    def test_collector(self) -> Collector:
        if self._test is None:
            self._test = make_collector(self._vec_env(self.cfg.test_episodes, self.cfg.test_num_workers))
        return self._test

    @property
    def env_info(self) -> EnvInfo:
        return self.train_collector.env.info

    def setup(self, stage: str) -> None:
        self.train_collector  # noqa: B018 - start the training env workers now

    def teardown(self, stage: str) -> None:
        for c in (self._train, self._test):
            if c is not None:
                c.env.close()
        self._train = self._test = None

    # -- data --------------------------------------------------------------------------
    def _seeds(self, stream: int, index: int, n: int) -> np.ndarray:
        return np.random.SeedSequence([self.seed, stream, index]).generate_state(n).astype(np.int64)

    def collect(self, policy: MultiAgentPolicy) -> EpisodeBatch:
        """One on-policy batch of B sampled episodes; counts their env steps."""
        collector = self.train_collector
        batch, stats = collector.collect(policy, self._seeds(_TRAIN, self.batches, collector.env.num_envs),
                                         greedy=False, generator=self.generator)
        self.batches += 1
        self.env_steps += int(stats.lengths.sum())
        batch.env_steps = self.env_steps
        self.last_train_stats = stats
        return batch

    def evaluate(self, policy: MultiAgentPolicy) -> dict[str, float]:
        """``test_episodes`` greedy episodes on the evaluation envs (not counted as env steps)."""
        collector = self.test_collector
        _, stats = collector.collect(policy, self._seeds(_TEST, self.evaluations, collector.env.num_envs),
                                     greedy=True)
        self.evaluations += 1
        return stats.summary("test", self.env_info.reports_wins)

    def train_dataloader(self) -> Iterator[EpisodeBatch]:
        return _RolloutStream(self)

    # -- checkpointing -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "batches": self.batches, "evaluations": self.evaluations,
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps, self.batches = state["env_steps"], state["batches"]
        self.evaluations = state["evaluations"]
        self.generator.set_state(state["generator"])


class _RolloutStream:
    """Iterable handed to Lightning: each ``next`` collects a fresh batch."""

    def __init__(self, dm: RolloutDataModule) -> None:
        self.dm = dm

    def __iter__(self) -> Iterator[EpisodeBatch]:
        while self.dm.env_steps < self.dm.max_env_steps:
            yield self.dm.collect(self.dm.trainer.lightning_module.rollout_policy())
