"""LICA's losses, named after the paper's equations.

Shapes: B episodes × T transitions; ``mask`` is the valid-transition mask
(:meth:`lica.rollout.batch.EpisodeBatch.step_mask`).  Masked statistics use
``torch.where``, never ``x * mask``, so a NaN or inf in a padded cell cannot leak into a
value or a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lica.models.agents import action_distribution, masked_logits


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the cells where ``mask`` is set (padded cells contribute 0)."""
    mask = mask.bool()
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum() / mask.sum().clamp_min(1)


def td_lambda_targets(target_q: Tensor, reward: Tensor, terminal: Tensor, mask: Tensor,
                      gamma: float, td_lambda: float) -> Tensor:
    """TD(λ) targets of Eq. 2 / Algorithm 1, computed backwards (PyMARL's recursion).

    ``target_q (B, T+1)`` = Q̄(s_t, u_t) of the target critic on the taken actions,
    ``reward, terminal, mask (B, T)``:

        G_T = Q̄_T · (1 − episode_terminated)
        G_t = λγ·G_{t+1} + mask_t·(r_t + (1 − λ)γ·Q̄_{t+1}·(1 − terminal_t))

    Returns ``(B, T)``.  λ = 0 is one-step TD; λ = 1 the Monte-Carlo return
    (bootstrapped from Q̄_T when the episode did not terminate).
    """
    terminal = terminal.to(target_q.dtype)
    mask = mask.to(target_q.dtype)
    ret = torch.empty_like(target_q)
    ret[:, -1] = target_q[:, -1] * (1 - terminal.sum(1).clamp(max=1))
    for t in range(reward.shape[1] - 1, -1, -1):
        ret[:, t] = td_lambda * gamma * ret[:, t + 1] + mask[:, t] * (
            reward[:, t] + (1 - td_lambda) * gamma * target_q[:, t + 1] * (1 - terminal[:, t]))
    return ret[:, :-1]


def critic_loss(q_taken: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 2: mean squared TD error over valid cells; returns ``(loss, td_error)``."""
    td_error = q_taken - targets.detach()
    return masked_mean(td_error.pow(2), mask), td_error


def policy_entropy(logits: Tensor, avail: Tensor) -> Tensor:
    """Per (episode, step) entropy, nats, over available actions, averaged over agents."""
    return action_distribution(logits, avail).entropy().mean(-1)


def entropy_loss(mean_entropy: Tensor, mode: str, coef: float, eps: float = 1e-6) -> tuple[Tensor, bool]:
    """The entropy term of the actor loss; returns ``(term, floor_hit)``.

    * ``vanilla`` (Eq. 5): ``−β·H̄``.
    * ``adaptive`` (Eq. 6): ``−ξ·H̄ / sg(H̄)``.  Its value is always ``−ξ``; its gradient is
      ``−ξ·∇H̄ / H̄``, the entropy derivative ``−(log p + 1)`` rescaled by ``ξ/H̄`` so the
      push towards exploration grows as the policy sharpens.  ``sg(H̄)`` is floored at
      ``eps`` (``floor_hit`` reports it) so a collapsed policy cannot divide by zero.
    """
    if mode == "vanilla":
        return -coef * mean_entropy, False
    if mode == "adaptive":
        scale = mean_entropy.detach()
        floor_hit = bool(scale < eps)
        return -coef * mean_entropy / scale.clamp_min(eps), floor_hit
    raise ValueError(f"algo.entropy must be 'adaptive' or 'vanilla', got {mode!r}.")


def actor_critic_input(logits: Tensor, avail: Tensor, mode: str, tau: float = 1.0) -> Tensor:
    """What the actor feeds to the critic in place of the one-hot action (Eq. 3–4).

    * ``probs``: the action-probability vectors π_t^a (unavailable actions exactly 0).
    * ``gumbel``: straight-through Gumbel-Softmax samples (one-hot forward values,
      gradients of the relaxed sample with temperature ``tau``).
    """
    if mode == "probs":
        return action_distribution(logits, avail).probs
    if mode == "gumbel":
        return F.gumbel_softmax(masked_logits(logits, avail), tau=tau, hard=True)
    raise ValueError(f"algo.actor_input must be 'probs' or 'gumbel', got {mode!r}.")
