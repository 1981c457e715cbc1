"""The losses, named after the paper's equations (and COMA's advantage, its Eq. 4).

Shapes: B episodes × T transitions; ``mask`` is the valid-transition mask
(:meth:`lica.rollout.batch.EpisodeBatch.step_mask`).  Masked statistics use
``torch.where``, never ``x * mask``, so a NaN or inf in a padded cell cannot leak into a
value or a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lica.config import ActorInput, EntropyTerm
from lica.models.agents import action_distribution, masked_logits


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over the cells where ``mask`` is set (padded cells contribute 0)."""
    mask = mask.bool()
    return torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum() / mask.sum().clamp_min(1)


def td_lambda_targets(target_q: Tensor, reward: Tensor, terminal: Tensor, mask: Tensor,
                      gamma: float, td_lambda: float) -> Tensor:
    """TD(λ) targets of Eq. 2 / Algorithm 1: the λ-return, computed backwards.

    ``target_q (B, T+1)`` = Q̄(s_t, u_t) of the target critic on the taken actions,
    ``reward, terminal, mask (B, T)``; on valid cells

        G_t = r_t + γ·(1 − terminal_t)·[(1 − λ)·Q̄_{t+1} + λ·G_{t+1}],

    where ``G_{t+1} = Q̄_{t+1}`` after an episode's last valid transition (a cut that
    bootstraps, ``algo.bootstrap_on_timeout``).  Padded cells are 0.  Returns ``(B, T)``.
    λ = 0 is one-step TD; λ = 1 the Monte-Carlo return (bootstrapped from the last
    state's Q̄ when the episode did not terminate).  When every episode ends in a
    terminal transition (the reference's time-outs) this is PyMARL's recursion.
    """
    mask = mask.bool()
    terminal = terminal.to(target_q.dtype)
    zero = torch.zeros((), dtype=target_q.dtype, device=target_q.device)
    # continues[:, t]: transition t is followed by another valid transition of its episode
    continues = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)
    ret = torch.zeros_like(target_q)
    for t in range(reward.shape[1] - 1, -1, -1):
        following = torch.where(continues[:, t], ret[:, t + 1], target_q[:, t + 1])
        value = reward[:, t] + gamma * (1 - terminal[:, t]) * (
            (1 - td_lambda) * target_q[:, t + 1] + td_lambda * following)
        ret[:, t] = torch.where(mask[:, t], value, zero)
    return ret[:, :-1]


def critic_diagnostics(q_taken: Tensor, reward: Tensor, mask: Tensor,
                       gamma: float) -> dict[str, float]:
    """How well Q(s_t, u_t) tracks the realised discounted return-to-go of the same
    cells, ``R_t = Σ_k γ^k r_{t+k}`` up to the episode's end (no bootstrap): the means,
    the bias ``mean(Q − R)`` and the correlation over valid cells."""
    realised = discounted_returns(reward, mask, gamma)
    q, r = q_taken[mask.bool()], realised[mask.bool()]
    qc, rc = q - q.mean(), r - r.mean()
    corr = (qc * rc).sum() / (qc.norm() * rc.norm()).clamp_min(1e-12)
    return {"q_taken_mean": q.mean().item(), "return_to_go_mean": r.mean().item(),
            "critic_bias": (q - r).mean().item(), "critic_return_corr": corr.item()}


def discounted_returns(reward: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """``R_t = r_t + γ·R_{t+1}`` within each episode's valid cells, 0 elsewhere ``(B, T)``."""
    mask = mask.bool()
    ret = torch.zeros_like(reward)
    following = torch.zeros_like(reward[:, 0])
    for t in range(reward.shape[1] - 1, -1, -1):
        following = torch.where(mask[:, t], reward[:, t] + gamma * following, torch.zeros_like(following))
        ret[:, t] = following
    return ret


def critic_loss(q_taken: Tensor, targets: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. 2: mean squared TD error over valid cells; returns ``(loss, td_error)``."""
    td_error = q_taken - targets.detach()
    return masked_mean(td_error.pow(2), mask), td_error


def policy_entropy(logits: Tensor, avail: Tensor) -> Tensor:
    """Per (episode, step) entropy, nats, over available actions, averaged over agents."""
    return action_distribution(logits, avail).entropy().mean(-1)


def entropy_loss(mean_entropy: Tensor, mode: EntropyTerm | str, coef: float,
                 eps: float = 1e-6) -> tuple[Tensor, bool]:
    """The entropy term of the actor loss; returns ``(term, floor_hit)``.

    * ``vanilla`` (Eq. 5): ``−β·H̄``.
    * ``adaptive`` (Eq. 6): ``−ξ·H̄ / sg(H̄)``.  Its value is always ``−ξ``; its gradient is
      ``−ξ·∇H̄ / H̄``, the entropy derivative ``−(log p + 1)`` rescaled by ``ξ/H̄`` so the
      push towards exploration grows as the policy sharpens.  ``sg(H̄)`` is floored at
      ``eps`` (``floor_hit`` reports it) so a collapsed policy cannot divide by zero.
    """
    if EntropyTerm(mode) is EntropyTerm.vanilla:
        return -coef * mean_entropy, False
    scale = mean_entropy.detach()
    floor_hit = bool(scale < eps)
    return -coef * mean_entropy / scale.clamp_min(eps), floor_hit


def actor_critic_input(logits: Tensor, avail: Tensor, mode: ActorInput | str, tau: float = 1.0) -> Tensor:
    """What the actor feeds to the critic in place of the one-hot action (Eq. 3–4).

    * ``probs``: the action-probability vectors π_t^a (unavailable actions exactly 0).
    * ``gumbel``: straight-through Gumbel-Softmax samples (one-hot forward values,
      gradients of the relaxed sample with temperature ``tau``).
    """
    if ActorInput(mode) is ActorInput.probs:
        return action_distribution(logits, avail).probs
    return F.gumbel_softmax(masked_logits(logits, avail), tau=tau, hard=True)


def coma_advantage(q_values: Tensor, probs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """COMA's counterfactual advantage (Foerster et al. 2018, Eq. 4) for every agent:
    returns ``(Q(s,u), baseline, A)``, each ``(...,)``.

    ``q_values (..., |A|)`` = ``Q(s, (u^{−a}, u'))`` for every action ``u'`` of the agent,
    ``probs (..., |A|)`` = ``π^a(·|τ^a)`` (0 on unavailable actions), ``actions (...)``
    the taken action ``u^a``:  ``A = Q(s, u) − Σ_{u'} π^a(u') · Q(s, (u^{−a}, u'))``.
    """
    q_taken = q_values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    baseline = (probs * q_values).sum(-1)
    return q_taken, baseline, q_taken - baseline
