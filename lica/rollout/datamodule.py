"""The on-policy rollout DataModule.

Its training "dataloader" is an iterator that collects B complete episodes (one per
training env) with the *current* policy each time it is advanced.  The policy comes from
the callable given to :meth:`RolloutDataModule.use_policy` (the LightningModule's
``rollout_policy``; :class:`lica.experiment.Experiment` wires them).  The LightningModule
advances the iterator inside ``training_step`` (``dataloader_iter``), so no batch is ever
collected before the previous update: Lightning's default one-batch prefetch would make
the data one update stale.  Each batch carries its env-step count and its episodes'
statistics.  Iteration ends when the env-step budget ``trainer.max_env_steps`` is spent.

Episode reset seeds come from the ``TRAIN`` and ``TEST`` streams of :mod:`lica.seeding`
(indexed by the batch and the evaluation number), training actions from the DataModule's
own sampling generator; all three counters and the generator are checkpointed, so a
resumed run sees exactly the episodes the uninterrupted run would have seen.  Evaluation
never touches the training sampler's generator.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytorch_lightning as pl

from lica.config import EnvConfig, RolloutConfig
from lica.envs import make_vec_env
from lica.envs.base import EnvInfo, VecEnv
from lica.models.agents import MultiAgentPolicy
from lica.rollout.batch import EpisodeBatch
from lica.rollout import make_collector
from lica.rollout.collector import Collector
from lica.seeding import Stream, episode_seeds, sampling_generator


class RolloutDataModule(pl.LightningDataModule):
    def __init__(self, env: EnvConfig, rollout: RolloutConfig, seed: int, max_env_steps: int) -> None:
        super().__init__()
        self.env_cfg, self.cfg, self.seed, self.max_env_steps = env, rollout, seed, max_env_steps
        self.env_steps = 0
        self.batches = 0
        self.evaluations = 0
        self.generator = sampling_generator(seed)
        self._policy: Callable[[], MultiAgentPolicy] | None = None
        self._train: Collector | None = None
        self._test: Collector | None = None

    def use_policy(self, policy: Callable[[], MultiAgentPolicy]) -> None:
        """Collect training batches with ``policy()``, called before every batch."""
        self._policy = policy

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
    def collect(self, policy: MultiAgentPolicy) -> EpisodeBatch:
        """One on-policy batch of B sampled episodes; counts their env steps."""
        collector = self.train_collector
        seeds = episode_seeds(self.seed, Stream.TRAIN, collector.env.num_envs, index=self.batches)
        batch = collector.collect(policy, seeds, greedy=False, generator=self.generator)
        self.batches += 1
        self.env_steps += int(batch.stats.lengths.sum())
        batch.env_steps = self.env_steps
        return batch

    def evaluate(self, policy: MultiAgentPolicy) -> dict[str, float]:
        """``test_episodes`` greedy episodes on the evaluation envs (not counted as env steps)."""
        collector = self.test_collector
        seeds = episode_seeds(self.seed, Stream.TEST, collector.env.num_envs, index=self.evaluations)
        batch = collector.collect(policy, seeds, greedy=True)
        self.evaluations += 1
        return batch.stats.summary("test", self.env_info.reports_wins)

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
        if self.dm._policy is None:
            raise RuntimeError("RolloutDataModule has no policy to collect with: call use_policy(module.rollout_policy) "
                               "before fitting (lica.experiment.Experiment does)")
        while self.dm.env_steps < self.dm.max_env_steps:
            yield self.dm.collect(self.dm._policy())
