"""Centralised critics Q(s, u) over the joint action (LICA_SPEC §2).

The joint action ``u = [u^1; …; u^n]`` is a flat ``n·|A|`` vector, agent-major: one-hot
actions when the critic learns (Eq. 2), action probabilities or Gumbel-Softmax samples
when the actor learns through it (Eq. 3–4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MixingCritic(nn.Module):
    """C_Mix: the hypernetwork critic of Eq. 1.

    ``Q(s, u) = w2(s)ᵀ · ReLU(W1(s)ᵀ u + b1(s)) + b2(s)``.  The state enters only through
    the hypernetworks, so state and action associate multiplicatively; there is no
    ``abs()`` (no monotonicity constraint, unlike QMIX).
    """

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, embed_dim: int = 64,
                 hypernet_layers: int = 2, hypernet_embed: int | None = None) -> None:
        super().__init__()
        self.action_dim = n_agents * n_actions
        self.hidden = embed_dim  # H
        w1_size = self.action_dim * embed_dim
        if hypernet_layers == 1:
            self.hyper_w1 = nn.Linear(state_dim, w1_size)
        elif hypernet_layers == 2:
            e = hypernet_embed or w1_size  # E = H·n·|A| in the reference code
            self.hyper_w1 = nn.Sequential(nn.Linear(state_dim, e), nn.ReLU(), nn.Linear(e, w1_size))
        else:
            raise ValueError(f"algo.hypernet_layers must be 1 or 2, got {hypernet_layers}.")
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))
        self.hyper_b2 = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def forward(self, joint_action: Tensor, state: Tensor) -> Tensor:
        """``joint_action (..., n·|A|)``, ``state (..., S)`` → ``Q (...)``."""
        lead = state.shape[:-1]
        s = state.reshape(-1, state.shape[-1])
        u = joint_action.reshape(-1, 1, self.action_dim)
        w1 = self.hyper_w1(s).view(-1, self.action_dim, self.hidden)
        h = torch.relu(torch.bmm(u, w1).squeeze(1) + self.hyper_b1(s))
        q = (h * self.hyper_w2(s)).sum(-1, keepdim=True) + self.hyper_b2(s)
        return q.view(lead)


class MLPCritic(nn.Module):
    """C_MLP (paper Fig. A2): ``f_s(s) ⊕ f_u(u)`` → MLP → Q; state and action associate
    additively (concatenation), the ablation of the mixing critic."""

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.f_s = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU())
        self.f_u = nn.Sequential(nn.Linear(n_agents * n_actions, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, joint_action: Tensor, state: Tensor) -> Tensor:
        lead = state.shape[:-1]
        u = joint_action.reshape(*lead, -1)
        return self.head(torch.cat([self.f_s(state), self.f_u(u)], dim=-1)).squeeze(-1)


def build_critic(kind: str, state_dim: int, n_agents: int, n_actions: int, embed_dim: int = 64,
                 hypernet_layers: int = 2, hypernet_embed: int | None = None) -> nn.Module:
    if kind == "mix":
        return MixingCritic(state_dim, n_agents, n_actions, embed_dim, hypernet_layers, hypernet_embed)
    if kind == "mlp":
        return MLPCritic(state_dim, n_agents, n_actions, embed_dim)
    raise ValueError(f"algo.critic must be 'mix' (C_Mix) or 'mlp' (C_MLP), got {kind!r}.")
