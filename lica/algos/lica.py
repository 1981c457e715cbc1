"""LICA: Learning Implicit Credit Assignment (Zhou et al., NeurIPS 2020), Algorithm 1.

Per on-policy batch: ``algo.critic_updates`` critic steps (TD(λ) on the taken one-hot
joint actions against targets of the target critic, Eq. 2; one step in the reference),
each followed by the target update (a hard copy every ``target_update_interval`` critic
steps, or a soft update with ``target_tau``) → one actor step through the freshly
updated critic on the agents' action probabilities (Eq. 3–4) with the entropy term
(adaptive, Eq. 6, or vanilla, Eq. 5).
"""

from __future__ import annotations

import torch

from lica.algos.base import ActorCriticModule
from lica.algos.losses import (actor_critic_input, critic_diagnostics, critic_loss, entropy_loss, masked_mean,
                               policy_entropy, td_lambda_targets)
from lica.config import CriticTarget, LICAConfig
from lica.envs.base import EnvInfo
from lica.models.agents import action_distribution
from lica.models.critics import build_critic
from lica.rollout.batch import EpisodeBatch


class LICA(ActorCriticModule):
    def __init__(self, algo: LICAConfig, env_info: EnvInfo) -> None:
        super().__init__(algo, env_info)
        self.critic = build_critic(algo.critic, env_info.state_dim, env_info.n_agents, env_info.n_actions,
                                   algo.mixing_embed_dim, algo.hypernet_layers, algo.hypernet_embed,
                                   algo.value_layers, algo.value_width)
        self.make_target()
        self.replay: list[EpisodeBatch] = []  # the critic's earlier batches, newest first
        self.critic_steps_per_batch = algo.critic_updates

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        algo = self.algo
        metrics = self.update_critic(EpisodeBatch.cat([batch, *self.replay]) if self.replay else batch,
                                     batch.batch_size)
        if algo.critic_replay:
            self.replay = [batch, *self.replay][: algo.critic_replay]
        return {**metrics, **self.update_actor(batch)}

    def update_critic(self, batch: EpisodeBatch, fresh: int) -> dict[str, float]:
        """``algo.critic_updates`` critic steps on ``batch``, whose first ``fresh`` episodes
        are the new ones (the diagnostics describe those, before any fitting)."""
        critic_opt, _ = self.optimizers()
        algo = self.algo
        mask = batch.step_mask()
        dense = not algo.critic_fast_path
        state, actions, filled = batch.state, batch.actions, batch.filled
        terminal = batch.terminal(algo.bootstrap_on_timeout)

        # Critic (Eq. 2): SARSA-style Q(s, u) on the taken actions vs TD(λ) targets.
        with torch.no_grad():
            if algo.critic_target == CriticTarget.expected:  # Q̄(s, π) of the current policy
                probs = action_distribution(self.actor.unroll(batch.obs, batch.actions_onehot), batch.avail).probs
                target_q = self.target_critic(probs.flatten(-2), state)
            else:  # Q̄(s, u) of the taken actions (the reference)
                target_q = self.target_critic.q_taken(actions, state, filled, dense)
            target_q = target_q.masked_fill(~filled, 0.0)
        targets = td_lambda_targets(target_q, batch.reward, terminal, mask, algo.gamma, algo.td_lambda)
        size = algo.critic_minibatch_episodes
        metrics: dict[str, float] = {}
        for step in range(algo.critic_updates):
            rows = torch.randperm(batch.batch_size)[:size] if 0 < size < batch.batch_size else None
            sel = slice(None) if rows is None else rows
            q_taken = self.critic.q_taken(actions[sel, :-1], state[sel, :-1], filled[sel, :-1], dense)
            if step == 0:  # the critic's predictions on the new episodes before fitting them
                before = q_taken.detach()[:fresh] if rows is None else None
                metrics = self._critic_diagnostics(batch, targets, mask, fresh, dense, before)
            loss_c, _ = critic_loss(q_taken, targets[sel], mask[sel])
            metrics["critic_grad_norm"] = self.optimise(critic_opt, loss_c, self.critic.parameters(), "critic")
            self.after_critic_step()
        metrics["critic_loss_final"] = loss_c.item()
        return metrics

    @torch.no_grad()
    def _critic_diagnostics(self, batch: EpisodeBatch, targets: torch.Tensor, mask: torch.Tensor, fresh: int,
                            dense: bool, q: torch.Tensor | None) -> dict[str, float]:
        """Loss, TD error and how Q tracks the realised return, on the new episodes; ``q``
        = the critic's Q on them when the first step has already computed it."""
        new = slice(0, fresh)
        if q is None:
            q = self.critic.q_taken(batch.actions[new, :-1], batch.state[new, :-1], batch.filled[new, :-1], dense)
        loss, td_error = critic_loss(q, targets[new], mask[new])
        return {"critic_loss": loss.item(), "td_error_abs": masked_mean(td_error.abs(), mask[new]).item(),
                "target_mean": masked_mean(targets[new], mask[new]).item(),
                **critic_diagnostics(q, batch.reward[new], mask[new], self.algo.gamma)}

    def update_actor(self, batch: EpisodeBatch) -> dict[str, float]:
        """``algo.actor_updates`` actor steps (one in the reference; Eq. 3-4, 6): maximise
        Q(s, π) of the updated, frozen critic + the entropy term, on the new episodes only.
        The critic's state-dependent part is computed once for all steps, and only on the
        episodes' steps (not on the padding after an episode's end)."""
        _, actor_opt = self.optimizers()
        algo = self.algo
        mask, avail = batch.step_mask(), batch.avail[:, :-1]
        valid = mask.bool()
        self.toggle_optimizer(actor_opt)  # critic params frozen: no gradient reaches them
        with torch.no_grad():
            q_of = self.critic.at_state(batch.state[:, :-1][valid])
        for step in range(algo.actor_updates):
            logits = self.actor.unroll(batch.obs[:, :-1], batch.actions_onehot[:, :-1])
            q_mean = q_of(actor_critic_input(logits, avail, algo.actor_input, algo.gumbel_tau)[valid]
                          .flatten(-2)).mean()
            entropy = masked_mean(policy_entropy(logits, avail), mask)
            ent_term, floor_hit = entropy_loss(entropy, algo.entropy, algo.entropy_weight, algo.entropy_eps)
            if step == 0:
                q_grad, ent_grad = _split_grads(q_mean, ent_term, logits)
                first = {"q_pi_mean": q_mean.item(), "policy_entropy": entropy.item(),
                         "actor_q_grad_norm": q_grad, "actor_entropy_grad_norm": ent_grad}
            loss_a = -q_mean + ent_term
            actor_norm = self.optimise(actor_opt, loss_a, self.actor.parameters(), "actor")
        self.untoggle_optimizer(actor_opt)
        return {**self.target_age(), **first, "actor_loss": loss_a.item(), "actor_grad_norm": actor_norm,
                "entropy_floor_hit": float(floor_hit)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lica"]["replay"] = [b.state_dict() for b in self.replay]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.replay = [EpisodeBatch(**b) for b in checkpoint["lica"]["replay"]]


def _split_grads(q_mean: torch.Tensor, ent_term: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    """Norms of the two parts of the actor's gradient with respect to the logits:
    ∂Q(s, π)/∂logits and ∂(entropy term)/∂logits (how hard each pulls)."""
    (g_q,) = torch.autograd.grad(q_mean, logits, retain_graph=True)
    (g_e,) = torch.autograd.grad(ent_term, logits, retain_graph=True, allow_unused=True)
    return float(g_q.norm()), float(g_e.norm()) if g_e is not None else 0.0
