"""LICA: Learning Implicit Credit Assignment (Zhou et al., NeurIPS 2020), Algorithm 1.

Per on-policy batch: one critic step (TD(λ) on the taken one-hot joint actions against
the target critic, Eq. 2) → hard target copy every ``target_update_interval`` critic
steps → one actor step through the freshly updated critic on the agents' action
probabilities (Eq. 3–4) with the adaptive entropy term (Eq. 6).
"""

from __future__ import annotations

from lica.algos.base import ActorCriticModule
from lica.algos.losses import (actor_critic_input, critic_loss, entropy_loss, masked_mean,
                               policy_entropy, td_lambda_targets)
from lica.config import AlgoConfig
from lica.envs.base import EnvInfo
from lica.models.critics import build_critic
from lica.rollout.batch import EpisodeBatch


class LICA(ActorCriticModule):
    def __init__(self, algo: AlgoConfig, env_info: EnvInfo, eval_interval: int) -> None:
        super().__init__(algo, env_info, eval_interval)
        self.critic = build_critic(algo.critic, env_info.state_dim, env_info.n_agents, env_info.n_actions,
                                   algo.mixing_embed_dim, algo.hypernet_layers, algo.hypernet_embed)
        self.make_target()

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        critic_opt, actor_opt = self.optimizers()
        mask = batch.step_mask()
        joint_onehot = batch.actions_onehot.flatten(-2)  # (B, T+1, n·|A|), agent-major
        state = batch.state

        # Critic (Eq. 2): SARSA-style Q(s, u) on the taken actions vs TD(λ) targets.
        target_q = self.target_critic(joint_onehot, state).masked_fill(~batch.filled, 0.0)
        targets = td_lambda_targets(target_q, batch.reward, batch.terminal(self.algo.bootstrap_on_timeout),
                                    mask, self.algo.gamma, self.algo.td_lambda)
        q_taken = self.critic(joint_onehot[:, :-1], state[:, :-1])
        loss_c, td_error = critic_loss(q_taken, targets, mask)
        critic_norm = self.optimise(critic_opt, loss_c, self.critic.parameters(), "critic")
        self.after_critic_step()

        # Actor (Eq. 3-4, 6): maximise Q(s, π) of the updated critic + entropy term.
        self.toggle_optimizer(actor_opt)  # critic params frozen: no gradient leaks into them
        logits = self.actor.unroll(batch.obs[:, :-1], batch.actions_onehot[:, :-1])
        avail = batch.avail[:, :-1]
        q_pi = self.critic(actor_critic_input(logits, avail, self.algo.actor_input, self.algo.gumbel_tau).flatten(-2),
                           state[:, :-1])
        entropy = masked_mean(policy_entropy(logits, avail), mask)
        coef = self.algo.entropy_coef if self.algo.entropy == "adaptive" else self.algo.beta
        ent_term, floor_hit = entropy_loss(entropy, self.algo.entropy, coef, self.algo.entropy_eps)
        q_mean = masked_mean(q_pi, mask)
        loss_a = -q_mean + ent_term
        actor_norm = self.optimise(actor_opt, loss_a, self.actor.parameters(), "actor")
        self.untoggle_optimizer(actor_opt)

        return {
            "critic_loss": loss_c.item(), "td_error_abs": masked_mean(td_error.abs(), mask).item(),
            "q_taken_mean": masked_mean(q_taken, mask).item(), "target_mean": masked_mean(targets, mask).item(),
            "critic_grad_norm": critic_norm, "actor_loss": loss_a.item(), "q_pi_mean": q_mean.item(),
            "policy_entropy": entropy.item(), "actor_grad_norm": actor_norm,
            "entropy_floor_hit": float(floor_hit),
        }
