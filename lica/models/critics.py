"""Centralised critics Q(s, u) over the joint action (docs/algorithm.md §2).

The joint action ``u = [u^1; …; u^n]`` is a flat ``n·|A|`` vector, agent-major: one-hot
actions when the critic learns (Eq. 2), action probabilities or Gumbel-Softmax samples
when the actor learns through it (Eq. 3–4).

Every critic has two entry points:

* ``critic(joint_action, state)`` -- the dense evaluation, for any joint-action vector;
* ``critic.q_taken(actions, state, valid)`` -- the same value on the one-hot joint action
  of taken action *indices* ``actions (..., n)``; cells where ``valid`` is false get the
  all-zero action vector (padding).  The mixing critic computes it exactly with |A| times
  fewer operations (:meth:`MixingCritic.q_taken`); ``dense=True`` forces the dense path.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from lica.config import Critic as CriticKind


def joint_onehot(actions: Tensor, valid: Tensor, n_actions: int, dtype: torch.dtype) -> Tensor:
    """``actions (..., n)`` long → the flat one-hot joint action ``(..., n·|A|)``, zero on
    cells where ``valid`` is false."""
    onehot = torch.nn.functional.one_hot(actions, n_actions).to(dtype)
    return onehot.masked_fill(~valid.bool()[..., None, None], 0.0).flatten(-2)


class Critic(nn.Module):
    """Shared interface of the joint-action critics."""

    n_actions: int

    def q_taken(self, actions: Tensor, state: Tensor, valid: Tensor, dense: bool = False) -> Tensor:
        """Q(s, u) on the one-hot joint action of ``actions`` (see the module doc)."""
        return self(joint_onehot(actions, valid, self.n_actions, state.dtype), state)

    def at_state(self, state: Tensor) -> Callable[[Tensor], Tensor]:
        """``u ↦ Q(s, u)`` for fixed states: what depends on the state alone is computed
        once, here (the actor evaluates the frozen critic at its changing probabilities)."""
        return lambda joint_action: self(joint_action, state)


class MixingCritic(Critic):
    """C_Mix: the hypernetwork critic of Eq. 1.

    ``Q(s, u) = w2(s)ᵀ · ReLU(W1(s)ᵀ u + b1(s)) + b2(s)``.  The state enters only through
    the hypernetworks, so state and action associate multiplicatively; there is no
    ``abs()`` (no monotonicity constraint, unlike QMIX).  ``W1(s)`` comes from
    ``hyper_w1``: one Linear(S, n·|A|·H) layer, or Linear(S, E) → ReLU → Linear(E, n·|A|·H)
    with E = n·|A|·H by default (the reference code's size).  ``b2(s)``, the state-value
    term, is an MLP with ``value_layers`` hidden ReLU layers of width ``value_width``
    (default H; the reference code's is one layer of width H).
    """

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, embed_dim: int = 64,
                 hypernet_layers: int = 2, hypernet_embed: int | None = None,
                 value_layers: int = 1, value_width: int | None = None) -> None:
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
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
        self.hyper_b2 = _mlp(state_dim, [value_width or embed_dim] * value_layers, 1)

    def forward(self, joint_action: Tensor, state: Tensor) -> Tensor:
        """``joint_action (..., n·|A|)``, ``state (..., S)`` → ``Q (...)``."""
        return self.at_state(state)(joint_action)

    def at_state(self, state: Tensor) -> Callable[[Tensor], Tensor]:
        lead = state.shape[:-1]
        s = state.reshape(-1, state.shape[-1])
        w1 = self.hyper_w1(s).view(-1, self.action_dim, self.hidden)
        b1, w2, b2 = self.hyper_b1(s), self.hyper_w2(s), self.hyper_b2(s)

        def q(joint_action: Tensor) -> Tensor:
            w1u = torch.bmm(joint_action.reshape(-1, 1, self.action_dim), w1).squeeze(1)
            return _mix(w1u, b1, w2, b2).view(lead)

        return q

    def q_taken(self, actions: Tensor, state: Tensor, valid: Tensor, dense: bool = False) -> Tensor:
        """Q(s, u) on one-hot joint actions, exactly, without forming ``W1(s)``.

        For a one-hot ``u``, ``W1(s)ᵀu = Σ_a W1(s)[a, u^a]``: only the H rows of
        ``hyper_w1``'s output layer that belong to each agent's taken action are needed.
        Cells are grouped by (agent, action); each group's hidden features ``z(s)`` go
        through that group's H rows in one matmul (n·|A| small matmuls in all), and the
        results are added per cell.  |A| times fewer multiply-adds than the dense path,
        the same numbers up to float rounding, forward and backward.
        """
        if dense:
            return super().q_taken(actions, state, valid)
        lead = state.shape[:-1]
        s = state.reshape(-1, state.shape[-1])
        acts = actions.reshape(-1, self.n_agents)
        valid = valid.reshape(-1).bool()
        if isinstance(self.hyper_w1, nn.Sequential):
            z, out = self.hyper_w1[1](self.hyper_w1[0](s)), self.hyper_w1[2]
        else:
            z, out = s, self.hyper_w1
        groups = torch.where(valid[:, None], acts, self.n_actions)  # padding: group |A|, skipped
        w1u = _TakenRows.apply(z, out.weight, out.bias, groups, self.n_actions, self.hidden)
        return _mix(w1u, self.hyper_b1(s), self.hyper_w2(s), self.hyper_b2(s)).view(lead)


def _mlp(in_dim: int, hidden: list[int], out_dim: int) -> nn.Sequential:
    """Linear → ReLU for each width in ``hidden``, then a Linear to ``out_dim``."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


def _mix(w1u: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
    """Eq. 1 from ``W1(s)ᵀu (N, H)``: ``w2(s)ᵀ · ReLU(W1(s)ᵀu + b1(s)) + b2(s)``."""
    return (torch.relu(w1u + b1) * w2).sum(-1, keepdim=True) + b2


class _TakenRows(torch.autograd.Function):
    """``W1(s)ᵀu`` for one-hot ``u`` from the output layer of ``hyper_w1`` (weight
    ``(n·|A|·H, E)``, agent-major then action then H), its input features ``z (N, E)``
    and the taken action of each agent ``groups (N, n)`` (``|A|`` = no action).

    Forward and backward each run one matmul per (agent, action) group on that group's
    cells.  Written as a Function so that the weight gradient is filled block by block
    in one buffer (autograd of sliced weights would add a full-size zero tensor per
    block).
    """

    @staticmethod
    def forward(ctx, z: Tensor, weight: Tensor, bias: Tensor, groups: Tensor, n_actions: int,
                hidden: int) -> Tensor:
        n_agents = groups.shape[1]
        w = weight.to(z.dtype).view(n_agents, n_actions, hidden, -1)  # z may be bf16 under autocast
        b = bias.to(z.dtype).view(n_agents, n_actions, hidden)
        plan = [_group_plan(groups[:, agent], n_actions) for agent in range(n_agents)]
        out = z.new_zeros(z.shape[0], hidden)
        for agent, (order, counts) in enumerate(plan):
            rows = z.index_select(0, order).split(counts)
            parts = [torch.addmm(b[agent, k], rows[k], w[agent, k].t()) for k in range(n_actions) if counts[k]]
            if parts:
                out.index_add_(0, order[: sum(counts[:n_actions])], torch.cat(parts))
        ctx.save_for_backward(z, weight)
        ctx.plan, ctx.n_actions, ctx.hidden = plan, n_actions, hidden
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        z, weight = ctx.saved_tensors
        n_actions, hidden = ctx.n_actions, ctx.hidden
        n_agents = len(ctx.plan)
        grad_out = grad_out.to(z.dtype)
        w = weight.to(z.dtype).view(n_agents, n_actions, hidden, -1)
        grad_w = torch.zeros_like(w)
        grad_b = grad_out.new_zeros(n_agents, n_actions, hidden)
        grad_z = torch.zeros_like(z) if ctx.needs_input_grad[0] else None
        for agent, (order, counts) in enumerate(ctx.plan):
            used = order[: sum(counts[:n_actions])]
            g_rows = grad_out.index_select(0, used).split(counts[:n_actions])
            z_rows = z.index_select(0, used).split(counts[:n_actions]) if ctx.needs_input_grad[1] else None
            back = []
            for k in range(n_actions):
                if not counts[k]:
                    continue
                if z_rows is not None:
                    torch.mm(g_rows[k].t(), z_rows[k], out=grad_w[agent, k])
                grad_b[agent, k] = g_rows[k].sum(0)
                if grad_z is not None:
                    back.append(g_rows[k] @ w[agent, k])
            if back:
                grad_z.index_add_(0, used, torch.cat(back))
        return grad_z, grad_w.view_as(weight).to(weight.dtype), grad_b.view(-1).to(weight.dtype), None, None, None


def _group_plan(group: Tensor, n_actions: int) -> tuple[Tensor, list[int]]:
    """Cells sorted by action (stable) and the size of each action's group (``|A|+1``
    groups, the last one holding the cells without an action)."""
    order = torch.argsort(group, stable=True)
    return order, torch.bincount(group, minlength=n_actions + 1).tolist()


class MLPCritic(Critic):
    """C_MLP (paper Fig. A2): ``f_s(s) ⊕ f_u(u)`` → MLP → Q; state and action associate
    additively (concatenation), the ablation of the mixing critic."""

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions
        self.f_s = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU())
        self.f_u = nn.Sequential(nn.Linear(n_agents * n_actions, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, joint_action: Tensor, state: Tensor) -> Tensor:
        return self.at_state(state)(joint_action)

    def at_state(self, state: Tensor) -> Callable[[Tensor], Tensor]:
        lead, fs = state.shape[:-1], self.f_s(state)
        return lambda joint_action: self.head(torch.cat([fs, self.f_u(joint_action.reshape(*lead, -1))],
                                                        dim=-1)).squeeze(-1)


def build_critic(kind: Critic | str, state_dim: int, n_agents: int, n_actions: int, embed_dim: int = 64,
                 hypernet_layers: int = 2, hypernet_embed: int | None = None, value_layers: int = 1,
                 value_width: int | None = None) -> Critic:
    """C_Mix (``mix``, Eq. 1) or C_MLP (``mlp``, Fig. A2) with hidden width ``embed_dim``."""
    if CriticKind(kind) is CriticKind.mlp:
        return MLPCritic(state_dim, n_agents, n_actions, embed_dim)
    return MixingCritic(state_dim, n_agents, n_actions, embed_dim, hypernet_layers, hypernet_embed,
                        value_layers, value_width)
