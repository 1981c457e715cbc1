"""COMA: Counterfactual Multi-Agent Policy Gradients (Foerster et al., AAAI 2018), the
baseline LICA is compared with, on the same agents, rollout, evaluation, logging and
checkpoints as :class:`lica.algos.lica.LICA`.

Per on-policy batch (PyMARL's ``coma_learner`` with one critic step per batch):

1. **Critic** (COMA §4, "centralised critic"): ``Q(s_t, u_t^{-a}, ·)`` gives the |A|
   Q-values of every action of agent ``a`` with the other agents' actions fixed, in one
   forward pass (:class:`COMACritic`).  It regresses the value of the taken action,
   ``Q(s_t, u_t)``, on TD(λ) targets of the target critic (COMA's λ-return
   ``y^(λ) = (1−λ) Σ_n λ^{n−1} G_t^{(n)}``, computed backwards by
   :func:`lica.algos.losses.td_lambda_targets`, one return per agent); the target is a
   hard copy every ``target_update_interval`` critic steps.
2. **Actor** (COMA Eq. 4 and the policy gradient): with the freshly updated critic,

       A^a(s, u) = Q(s, u) − Σ_{u'^a} π^a(u'^a | τ^a) · Q(s, (u^{−a}, u'^a))      (Eq. 4)

   and ``g = E_π[ Σ_a ∇_θ log π^a(u^a | τ^a) · A^a(s, u) ]``, i.e. the loss
   ``−mean over valid (episode, step) cells and agents of sg(A^a) · log π^a(u^a)``.
   The counterfactual baseline marginalises agent a's own action only, so it does not
   change the expected gradient, and ``Σ_u π(u)·A(u) = 0`` for every agent (the reason
   COMA's expected advantage is 0 in the paper's 1-step Traffic Junction, docs/algorithm.md §8).

Unavailable actions have probability exactly 0 (``masked_logits``), so they take no part
in the baseline; padded cells are excluded with ``torch.where`` masks.  PyMARL's COMA
has no entropy bonus (:class:`lica.config.COMAConfig`: ``entropy=vanilla, beta=0``); a positive
``algo.beta`` (or ``algo.entropy=adaptive`` with ``algo.entropy_coef``) adds the same
entropy term as LICA's to the policy-gradient loss.  PyMARL's ε-mixing of the training
policy is not used: training actions come from the masked softmax like LICA's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lica.algos.base import ActorCriticModule
from lica.algos.losses import (coma_advantage, critic_loss, entropy_loss, masked_mean, policy_entropy,
                               td_lambda_targets)
from lica.config import COMAConfig
from lica.envs.base import EnvInfo
from lica.models.agents import action_distribution
from lica.rollout.batch import EpisodeBatch


class COMACritic(nn.Module):
    """PyMARL's COMA critic: per agent ``a`` the input is

        state ⊕ obs^a ⊕ joint one-hot action with agent a's own block zeroed (u^{−a})
              ⊕ previous joint one-hot action (zeros at t=0) ⊕ one-hot agent id

    → Linear(in, 128) → ReLU → Linear(128, 128) → ReLU → Linear(128, |A|): the Q-values
    ``Q(s, (u^{−a}, u'))`` of every action ``u'`` of agent a (COMA §4).
    """

    def __init__(self, state_dim: int, obs_dim: int, n_agents: int, n_actions: int, hidden: int = 128,
                 last_action: bool = True) -> None:
        super().__init__()
        self.n_agents, self.n_actions, self.last_action = n_agents, n_actions, last_action
        joint = n_agents * n_actions
        d_in = state_dim + obs_dim + joint + (joint if last_action else 0) + n_agents
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, n_actions)
        # others[a] is 0 on agent a's own action block, 1 elsewhere: (n, n·|A|).
        others = (1 - torch.eye(n_agents)).repeat_interleave(n_actions, dim=1)
        self.register_buffer("others_mask", others.bool(), persistent=False)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    def inputs(self, state: Tensor, obs: Tensor, actions_onehot: Tensor) -> Tensor:
        """``state (B, T, S)``, ``obs (B, T, n, O)``, ``actions_onehot (B, T, n, A)`` →
        ``(B, T, n, in)``.  The previous action at step t is ``actions_onehot[:, t-1]``."""
        b, t, n = obs.shape[:3]
        joint = actions_onehot.reshape(b, t, 1, n * self.n_actions).expand(b, t, n, -1)
        parts = [state.unsqueeze(2).expand(b, t, n, -1), obs,
                 joint.masked_fill(~self.others_mask, 0.0)]
        if self.last_action:
            last = torch.cat([torch.zeros_like(joint[:, :1]), joint[:, :-1]], dim=1)
            parts.append(last)
        parts.append(self.agent_ids.expand(b, t, n, n))
        return torch.cat(parts, dim=-1)

    def forward(self, state: Tensor, obs: Tensor, actions_onehot: Tensor) -> Tensor:
        """Q-values ``(B, T, n, |A|)``."""
        x = torch.relu(self.fc1(self.inputs(state, obs, actions_onehot)))
        return self.fc3(torch.relu(self.fc2(x)))


def per_agent_td_lambda_targets(target_q: Tensor, reward: Tensor, terminal: Tensor, mask: Tensor,
                                gamma: float, td_lambda: float) -> Tensor:
    """:func:`~lica.algos.losses.td_lambda_targets` for each agent's ``Q̄(s, u)``:
    ``target_q (B, T+1, n)`` with the shared ``reward, terminal, mask (B, T)`` → ``(B, T, n)``."""
    b, t1, n = target_q.shape
    folded = target_q.permute(0, 2, 1).reshape(b * n, t1)  # agents folded into the batch
    rep = lambda x: x.repeat_interleave(n, dim=0)  # noqa: E731
    targets = td_lambda_targets(folded, rep(reward), rep(terminal), rep(mask), gamma, td_lambda)
    return targets.view(b, n, t1 - 1).permute(0, 2, 1)


class COMA(ActorCriticModule):
    """COMA on the shared :class:`ActorCriticModule` machinery (same actor as LICA)."""

    def __init__(self, algo: COMAConfig, env_info: EnvInfo) -> None:
        super().__init__(algo, env_info)
        self.critic = COMACritic(env_info.state_dim, env_info.obs_dim, env_info.n_agents, env_info.n_actions)
        self.make_target()

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        critic_opt, actor_opt = self.optimizers()
        n = self.env_info.n_agents
        mask = batch.step_mask()  # (B, T)
        agent_mask = mask.unsqueeze(-1).expand(-1, -1, n)  # (B, T, n): cells × agents
        state, obs, onehot = batch.state, batch.obs, batch.actions_onehot
        actions = batch.actions.clone()  # a gather index is saved for backward: no inference tensor
        taken = actions.unsqueeze(-1)

        # Critic: Q(s_t, u_t) of every agent vs per-agent TD(λ) targets of the target critic.
        target_q = self.target_critic(state, obs, onehot).gather(-1, taken).squeeze(-1)  # (B, T+1, n)
        target_q = target_q.masked_fill(~batch.filled.unsqueeze(-1), 0.0)
        targets = per_agent_td_lambda_targets(target_q, batch.reward,
                                              batch.terminal(self.algo.bootstrap_on_timeout), mask,
                                              self.algo.gamma, self.algo.td_lambda)
        q_taken = self.critic(state[:, :-1], obs[:, :-1], onehot[:, :-1]).gather(-1, taken[:, :-1]).squeeze(-1)
        loss_c, td_error = critic_loss(q_taken, targets, agent_mask)
        critic_norm = self.optimise(critic_opt, loss_c, self.critic.parameters(), "critic")
        self.after_critic_step()

        # Actor: counterfactual advantages (Eq. 4) of the updated critic, policy gradient.
        self.toggle_optimizer(actor_opt)
        with torch.no_grad():
            q_vals = self.critic(state[:, :-1], obs[:, :-1], onehot[:, :-1])  # (B, T, n, |A|)
        logits = self.actor.unroll(obs[:, :-1], onehot[:, :-1])
        avail = batch.avail[:, :-1]
        dist = action_distribution(logits, avail)
        _, baseline, advantage = coma_advantage(q_vals, dist.probs.detach(), actions[:, :-1])
        log_pi_taken = dist.log_prob(actions[:, :-1])  # (B, T, n)
        pg_loss = -masked_mean(advantage.detach() * log_pi_taken, agent_mask)
        entropy = masked_mean(policy_entropy(logits, avail), mask)
        ent_term, floor_hit = entropy_loss(entropy, self.algo.entropy, self.algo.entropy_weight, self.algo.entropy_eps)
        loss_a = pg_loss + ent_term  # ent_term = 0 (no gradient) with PyMARL's beta = 0
        actor_norm = self.optimise(actor_opt, loss_a, self.actor.parameters(), "actor")
        self.untoggle_optimizer(actor_opt)

        return {
            "critic_loss": loss_c.item(), "td_error_abs": masked_mean(td_error.abs(), agent_mask).item(),
            "q_taken_mean": masked_mean(q_taken, agent_mask).item(),
            "target_mean": masked_mean(targets, agent_mask).item(), "critic_grad_norm": critic_norm,
            "actor_loss": loss_a.item(), "pg_loss": pg_loss.item(),
            "advantage_mean": masked_mean(advantage, agent_mask).item(),
            "advantage_abs_mean": masked_mean(advantage.abs(), agent_mask).item(),
            "baseline_mean": masked_mean(baseline, agent_mask).item(),
            "policy_entropy": entropy.item(), "actor_grad_norm": actor_norm,
            "entropy_floor_hit": float(floor_hit),
        }
