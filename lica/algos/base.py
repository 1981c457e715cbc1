"""What every multi-agent actor-critic module in lica shares: manual optimisation over
on-policy batches pulled from the rollout DataModule (each batch carries its episode
statistics), the target critic's updates, NaN guards, and checkpoints that hold
everything the module needs to resume (networks incl. target critic, both optimisers via
Lightning, counters, every RNG state and the loggers' run ids).  When the policy is
tested and what each iteration logs is :class:`lica.callbacks.Evaluation`'s part."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from lica.config import ActorCriticConfig
from lica.envs.base import EnvInfo
from lica.models.agents import MultiAgentPolicy
from lica.rollout.batch import EpisodeBatch
from lica.seeding import rng_state, set_rng_state

log = logging.getLogger("lica")
COLLAPSED_ENTROPY = 0.01  # fraction of the maximum entropy below which a policy counts as collapsed


class ActorCriticModule(pl.LightningModule):
    """Subclasses build ``self.actor`` / ``self.critic`` and implement :meth:`update`."""

    critic: nn.Module
    target_critic: nn.Module

    def __init__(self, algo: ActorCriticConfig, env_info: EnvInfo) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.algo, self.env_info = algo, env_info
        self.actor = MultiAgentPolicy(env_info.obs_dim, env_info.n_agents, env_info.n_actions, algo.agent)
        self.critic_steps = 0
        self.env_steps_seen = 0  # training env steps of the batches received so far
        self.target_copied_at = (0, 0)  # (critic steps, env steps) when the target last took the weights
        self._cpu_actor: MultiAgentPolicy | None = None
        self._collapse_flagged = False

    def make_target(self) -> None:
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    # -- the loop ----------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Two Adam optimisers: index 0 the critic, index 1 the actor; torch's fused Adam
        (one kernel per parameter, no temporaries) on the devices that have it."""
        fused = self.device.type in ("cpu", "cuda")
        return [torch.optim.Adam(self.critic.parameters(), lr=self.algo.critic_lr, fused=fused),
                torch.optim.Adam(self.actor.parameters(), lr=self.algo.actor_lr, fused=fused)]

    def rollout_policy(self) -> MultiAgentPolicy:
        """The actor on the CPU, where the envs are (a synced copy when learning on GPU)."""
        if self.device.type == "cpu":
            return self.actor
        if self._cpu_actor is None:
            self._cpu_actor = copy.deepcopy(self.actor).cpu()
        self._cpu_actor.load_state_dict(self.actor.state_dict())
        return self._cpu_actor

    def training_step(self, dataloader_iter: Iterator) -> dict[str, float]:
        """One iteration: a batch collected now, with the current policy, and the update
        on it; returns the iteration's metrics (the update's and the batch's episode
        statistics), which :class:`lica.callbacks.Evaluation` logs."""
        batch, _, _ = next(dataloader_iter)
        batch = batch.to(self.device)
        self.env_steps_seen = batch.env_steps
        metrics = self.update(batch)
        self._flag_collapse(metrics)
        return {**metrics, **batch.stats.summary("train", self.env_info.reports_wins)}

    def _flag_collapse(self, metrics: dict[str, float]) -> None:
        """Warn once when the policy has (nearly) stopped exploring: mean entropy below
        :data:`COLLAPSED_ENTROPY` of its maximum ln|A|."""
        entropy = metrics.get("policy_entropy")
        top = math.log(self.env_info.n_actions)
        if self._collapse_flagged or entropy is None or entropy >= COLLAPSED_ENTROPY * top:
            return
        self._collapse_flagged = True
        log.warning("the policy has collapsed at env step %d: entropy %.4f nats of at most %.2f, actor gradient "
                    "norm %.2e. It no longer explores; raise algo.entropy_coef (ξ, or algo.beta for the vanilla "
                    "term) and check the critic's health (critic_bias, critic_return_corr).",
                    self.env_steps_seen, entropy, top, metrics.get("actor_grad_norm", float("nan")))

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        raise NotImplementedError

    # -- helpers for update() ----------------------------------------------------------
    def optimise(self, optimizer: Any, loss: torch.Tensor, params: Any, what: str) -> float:
        """Backward + norm clipping + step for one optimiser; returns the grad norm."""
        if not torch.isfinite(loss):
            self._non_finite(f"{what} loss is {loss.item()}", what)
        optimizer.zero_grad()
        self.manual_backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(params, self.algo.grad_norm_clip)
        if not torch.isfinite(norm):
            self._non_finite(f"{what} gradient norm is {norm.item()}", what)
        optimizer.step()
        return float(norm)

    def _non_finite(self, problem: str, what: str) -> None:
        raise FloatingPointError(
            f"{problem} at env step {self.env_steps_seen}; the parameters were not updated. Lower "
            f"algo.{what}_lr or algo.grad_norm_clip, or check the environment's rewards for inf/NaN.")

    critic_steps_per_batch = 1

    def after_critic_step(self) -> None:
        """Target update: a soft (Polyak) step ``θ̄ ← (1−τ)θ̄ + τθ`` when
        ``algo.target_tau > 0``, else a hard copy every ``target_update_interval`` steps."""
        self.critic_steps += 1
        tau = self.algo.target_tau
        if tau > 0:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.target_critic.parameters()), list(self.critic.parameters()), tau)
            self.target_copied_at = (self.critic_steps, self.env_steps_seen)
        elif self.critic_steps % self.algo.target_update_interval == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())
            self.target_copied_at = (self.critic_steps, self.env_steps_seen)

    def target_age(self) -> dict[str, float]:
        """Critic steps and env steps since the target critic last took the critic's weights."""
        steps, env_steps = self.target_copied_at
        return {"target_age_critic_steps": float(self.critic_steps - steps),
                "target_age_env_steps": float(self.env_steps_seen - env_steps)}

    # -- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lica"] = {
            "critic_steps": self.critic_steps,
            "target_copied_at": list(self.target_copied_at),
            "env_steps_seen": self.env_steps_seen,
            "rng": rng_state(),
            "logger_run_ids": {type(lg).__name__: str(lg.version) for lg in self.trainer.loggers},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["lica"]
        self.critic_steps = state["critic_steps"]
        self.target_copied_at, self.env_steps_seen = tuple(state["target_copied_at"]), state["env_steps_seen"]
        set_rng_state(state["rng"])


def target_schedule_problem(algo: ActorCriticConfig, critic_steps_per_batch: int, max_env_steps: int,
                            batch_episodes: int, episode_limit: int) -> str | None:
    """Why the hard target copies may never happen within the budget (None when they will):
    a batch holds at most ``batch_episodes · episode_limit`` env steps, so the budget
    guarantees at least ``⌈max_env_steps / that⌉ · critic_steps_per_batch`` critic steps."""
    if algo.target_tau > 0:
        return None
    per_batch = batch_episodes * episode_limit
    guaranteed = -(-max_env_steps // per_batch) * critic_steps_per_batch
    if guaranteed >= algo.target_update_interval:
        return None
    return (f"the target critic may never be copied: {max_env_steps} env steps guarantee only {guaranteed} "
            f"critic steps ({critic_steps_per_batch} per batch of at most {per_batch} env steps), fewer than "
            f"algo.target_update_interval={algo.target_update_interval}. Lower algo.target_update_interval, "
            "use soft updates (algo.target_tau > 0) or raise trainer.max_env_steps (docs/algorithm.md §10).")
