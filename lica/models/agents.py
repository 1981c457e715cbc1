"""Decentralised policies (the actor) and the action distribution over available actions.

docs/algorithm.md §2: input = observation ⊕ one-hot previous action (zeros at t=0) ⊕ one-hot
agent id.  ``type=rnn`` (SMAC reference): Linear(in, 64) → ReLU → GRUCell(64, 64) →
Linear(64, |A|).  ``type=mlp`` (the paper's MPE policies): Linear(in, h) → ReLU →
Linear(h, |A|).  ``shared=False`` gives every agent its own parameters (stacked
weights, one batched matmul for all agents).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical
from torch.func import functional_call

from lica.config import AgentConfig, AgentType

UNAVAILABLE_LOGIT = -1e10


def masked_logits(logits: Tensor, avail: Tensor) -> Tensor:
    """Logits with unavailable actions set to −1e10 (docs/algorithm.md §2).

    Rows with *no* available action (padding after an episode ends) are left unmasked
    so that softmax stays finite there; such rows are excluded by the step mask, and no
    NaN can reach a gradient through them.
    """
    avail = avail.bool()
    usable = torch.where(avail.any(-1, keepdim=True), avail, torch.ones_like(avail))
    return logits.masked_fill(~usable, UNAVAILABLE_LOGIT)


def action_distribution(logits: Tensor, avail: Tensor) -> Categorical:
    """π(·|τ) over available actions: unavailable actions get probability exactly 0."""
    return Categorical(logits=masked_logits(logits, avail))


class AgentLinear(nn.Module):
    """A Linear layer with one weight matrix per agent (``n_nets`` = n_agents) or one
    shared by all (``n_nets`` = 1).  Input ``(..., n_agents, in)``."""

    def __init__(self, n_nets: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(n_nets, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_nets, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.shape[0] == 1:
            return x @ self.weight[0] + self.bias[0]
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


class MultiAgentPolicy(nn.Module):
    """The actor: logits for every agent from its own observation history."""

    def __init__(self, obs_dim: int, n_agents: int, n_actions: int, cfg: AgentConfig) -> None:
        super().__init__()
        recurrent = AgentType(cfg.type) is AgentType.rnn
        if recurrent and not cfg.shared:
            raise ValueError("algo.agent.shared=false needs algo.agent.type=mlp "
                             "(per-agent RNNs are not implemented).")
        self.n_agents, self.n_actions, self.cfg = n_agents, n_actions, cfg
        d_in = obs_dim + (n_actions if cfg.obs_last_action else 0) + (n_agents if cfg.obs_agent_id else 0)
        n_nets = 1 if cfg.shared else n_agents
        self.fc1 = AgentLinear(n_nets, d_in, cfg.hidden_dim)
        self.rnn = nn.GRUCell(cfg.hidden_dim, cfg.hidden_dim) if recurrent else None
        self.fc2 = AgentLinear(n_nets, cfg.hidden_dim, n_actions)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    @property
    def recurrent(self) -> bool:
        return self.rnn is not None

    def initial_state(self, batch: int, device: torch.device | None = None) -> Tensor:
        """Zeros at every episode start; an empty tensor for feed-forward agents."""
        width = self.cfg.hidden_dim if self.recurrent else 0
        return torch.zeros(batch, self.n_agents, width, device=device)

    def inputs(self, obs: Tensor, last_action_onehot: Tensor) -> Tensor:
        """obs ⊕ one-hot previous action ⊕ one-hot agent id, shape ``(..., n, in)``."""
        parts = [obs]
        if self.cfg.obs_last_action:
            parts.append(last_action_onehot)
        if self.cfg.obs_agent_id:
            parts.append(self.agent_ids.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(parts, dim=-1)

    def forward(self, obs: Tensor, last_action_onehot: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """One time step for a batch: ``obs (B, n, O)`` → ``logits (B, n, A)``, new hidden."""
        x = torch.relu(self.fc1(self.inputs(obs, last_action_onehot)))
        if self.recurrent:
            b = x.shape[0]
            hidden = self.rnn(x.reshape(b * self.n_agents, -1),
                              hidden.reshape(b * self.n_agents, -1)).view(b, self.n_agents, -1)
            x = hidden
        return self.fc2(x), hidden

    def unroll(self, obs: Tensor, actions_onehot: Tensor) -> Tensor:
        """Logits for whole episodes: ``obs (B, T, n, O)`` → ``(B, T, n, A)``; the previous
        action at step t is ``actions_onehot[:, t-1]`` (zeros at t=0).  The same function
        as calling :meth:`forward` step by step, but fc1 and fc2 run on all steps at once
        and the recurrence runs as ``torch.nn.GRU`` with the cell's own parameters (one
        native loop over time, the GRUCell's equations)."""
        last = torch.cat([torch.zeros_like(actions_onehot[:, :1]), actions_onehot[:, :-1]], dim=1)
        x = torch.relu(self.fc1(self.inputs(obs, last)))
        if self.recurrent:
            b, t, n, h = x.shape
            cell = self.rnn
            weights = {"weight_ih_l0": cell.weight_ih, "weight_hh_l0": cell.weight_hh,
                       "bias_ih_l0": cell.bias_ih, "bias_hh_l0": cell.bias_hh}
            seq, _ = functional_call(_gru_over_time(h), weights, (x.transpose(0, 1).reshape(t, b * n, h),))
            x = seq.view(t, b, n, h).transpose(0, 1)
        return self.fc2(x)


@functools.lru_cache
def _gru_over_time(hidden: int) -> nn.GRU:
    """A parameterless (meta-device) ``nn.GRU`` of the given width: the program that
    :meth:`MultiAgentPolicy.unroll` runs with a GRUCell's parameters."""
    return nn.GRU(hidden, hidden, device="meta")
