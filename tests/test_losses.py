"""The maths of Eq. 2, 4, 5, 6 against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from lica.algos.losses import (actor_critic_input, critic_loss, entropy_loss, masked_mean,
                               policy_entropy, td_lambda_targets)
from lica.rollout.batch import EpisodeBatch



@pytest.fixture(autouse=True)
def float64():
    """Double precision for the numerical checks, restored afterwards for other modules."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_padded_batch(lengths: list[int], terminated_last: list[bool], n=2, a=4, obs=3, s=5, seed=0):
    """Episodes of different lengths, padded to the longest; ``terminated_last[i]``: the
    episode ended by a true terminal (else it was cut by the time limit at max length)."""
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    filled = torch.zeros(b, t + 1, dtype=torch.bool)
    terminated = torch.zeros(b, t, dtype=torch.bool)
    truncated = torch.zeros(b, t, dtype=torch.bool)
    reward = torch.zeros(b, t)
    avail = torch.zeros(b, t + 1, n, a, dtype=torch.bool)
    for i, (L, term) in enumerate(zip(lengths, terminated_last)):
        filled[i, : L + 1] = True
        reward[i, :L] = torch.randn(L, generator=g)
        (terminated if term else truncated)[i, L - 1] = True
        av = torch.rand(L + 1, n, a, generator=g) < 0.6
        av[..., 0] = True  # at least one available action per agent
        avail[i, : L + 1] = av
    actions = torch.zeros(b, t + 1, n, dtype=torch.long)
    return EpisodeBatch(obs=torch.randn(b, t + 1, n, obs, generator=g) * filled[..., None, None],
                        state=torch.randn(b, t + 1, s, generator=g) * filled[..., None], avail=avail,
                        actions=actions, actions_onehot=torch.zeros(b, t + 1, n, a), filled=filled,
                        reward=reward, terminated=terminated, truncated=truncated)


def forward_view_lambda_return(r, q, terminal_end, gamma, lam):
    """Independent forward view: G^λ_t = (1-λ) Σ_{n=1}^{N-1} λ^{n-1} G^(n)_t + λ^{N-1} G^(N)_t,
    N = L - t, with n-step returns G^(n)_t = Σ_k γ^k r_{t+k} + γ^n Q_{t+n} (no bootstrap
    past a terminal end).  ``r``: list of L rewards; ``q``: L+1 target values."""
    L = len(r)
    out = []
    for t in range(L):
        N = L - t

        def n_step(n):
            g = sum(gamma ** k * r[t + k] for k in range(n))
            end = t + n
            if not (end == L and terminal_end):
                g += gamma ** n * q[end]
            return g

        total = sum((1 - lam) * lam ** (n - 1) * n_step(n) for n in range(1, N))
        out.append(total + lam ** (N - 1) * n_step(N))
    return out


@pytest.mark.parametrize("lam", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("bootstrap_on_timeout", [False, True])
@pytest.mark.parametrize("term", [[True, True, True, False, True],
                                  # time-outs shorter than the longest episode (a cut at step 3 and at step 1)
                                  [True, False, True, False, False]])
def test_td_lambda_matches_forward_view(lam, bootstrap_on_timeout, term):
    lengths = [7, 3, 5, 7, 1]
    batch = random_padded_batch(lengths, term)
    gamma = 0.9
    q = torch.randn(batch.filled.shape, generator=torch.Generator().manual_seed(1)).masked_fill(~batch.filled, 0)
    mask = batch.step_mask()
    terminal = batch.terminal(bootstrap_on_timeout)
    targets = td_lambda_targets(q, batch.reward, terminal, mask, gamma, lam)
    for i, (L, ended) in enumerate(zip(lengths, term)):
        terminal_end = ended or not bootstrap_on_timeout  # a time-out stored as terminal
        expected = forward_view_lambda_return(batch.reward[i, :L].tolist(), q[i, : L + 1].tolist(),
                                              terminal_end, gamma, lam)
        assert targets[i, :L].tolist() == pytest.approx(expected, abs=1e-9), (i, lam)
        assert not mask[i, L:].any(), "no valid cell after the episode's last transition"
        assert mask[i, :L].all()


def test_step_mask_drops_rows_after_terminal():
    batch = random_padded_batch([4, 2], [True, True])
    assert batch.step_mask().tolist() == [[True] * 4, [True, True, False, False]]


def test_critic_loss_averages_valid_cells_only():
    q = torch.tensor([[1.0, 2.0, 99.0]])
    targets = torch.tensor([[0.0, 0.0, float("nan")]])
    mask = torch.tensor([[True, True, False]])
    loss, _ = critic_loss(q, targets, mask)
    assert loss.item() == pytest.approx((1 + 4) / 2)


def _entropy_setup(seed=0):
    batch = random_padded_batch([5, 2, 4], [True, True, True], n=3, a=5, seed=seed)
    logits = torch.randn(batch.avail[:, :-1].shape, generator=torch.Generator().manual_seed(seed + 7))
    return logits.requires_grad_(True), batch.avail[:, :-1], batch.step_mask()


def test_adaptive_entropy_value_and_gradient_match_eq6():
    logits, avail, mask = _entropy_setup()
    xi = 0.11
    H = masked_mean(policy_entropy(logits, avail), mask)
    term, floor_hit = entropy_loss(H, "adaptive", xi)
    assert term.item() == pytest.approx(-xi) and not floor_hit
    (g_adaptive,) = torch.autograd.grad(term, logits)

    H2 = masked_mean(policy_entropy(logits, avail), mask)
    vanilla, _ = entropy_loss(H2, "vanilla", 1.0)
    (g_vanilla,) = torch.autograd.grad(vanilla, logits)
    torch.testing.assert_close(g_adaptive, xi / H.item() * g_vanilla)

    # numerical gradient of −ξ·H̄/H̄₀ by central differences (H̄₀ held fixed: stop-gradient)
    h, H0 = 1e-6, H.item()
    flat = logits.detach().clone().view(-1)
    for idx in torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(3))[:40]:
        plus, minus = flat.clone(), flat.clone()
        plus[idx] += h
        minus[idx] -= h
        f = lambda x: (-xi * masked_mean(policy_entropy(x.view_as(logits), avail), mask) / H0).item()  # noqa: E731
        numeric = (f(plus) - f(minus)) / (2 * h)
        assert g_adaptive.view(-1)[idx].item() == pytest.approx(numeric, abs=1e-7)

    # unavailable actions and padded cells get exactly zero gradient
    assert (g_adaptive[~avail.bool()] == 0).all()
    assert (g_adaptive[~mask] == 0).all()


def test_entropy_gradient_in_probability_space_is_minus_log_p_plus_1():
    """dH/dp_i = −(log p_i + 1) for available actions; Eq. 6 scales it by ξ/H."""
    p = torch.tensor([0.5, 0.3, 0.2, 0.0], requires_grad=True)
    avail = torch.tensor([True, True, True, False])
    H = -(torch.where(avail, p * torch.log(torch.where(avail, p, 1.0)), 0.0)).sum()
    xi = 0.06
    term, _ = entropy_loss(H, "adaptive", xi)
    (g,) = torch.autograd.grad(term, p)
    expected = xi / H.item() * (torch.log(p[:3].detach()) + 1)
    torch.testing.assert_close(g[:3], expected)
    assert g[3] == 0


def test_entropy_floor_guards_collapsed_policy():
    H = torch.tensor(0.0, requires_grad=True)
    term, floor_hit = entropy_loss(H, "adaptive", 0.1, eps=1e-6)
    term.backward()
    assert floor_hit and torch.isfinite(H.grad)


@pytest.mark.parametrize("mode", ["probs", "gumbel"])
def test_padded_rows_without_available_actions_give_no_nan_gradient(mode):
    from lica.models.critics import MixingCritic

    logits, avail, mask = _entropy_setup(seed=4)
    assert (~avail.any(-1)).any(), "the batch must contain padded rows with no available action"
    state = torch.randn(*avail.shape[:2], 6)
    critic = MixingCritic(6, avail.shape[2], avail.shape[3])
    pi = actor_critic_input(logits, avail, mode)
    assert torch.isfinite(pi).all()
    if mode == "probs":
        assert (pi[avail.any(-1, keepdim=True).expand_as(pi) & ~avail] == 0).all()
        valid_rows = avail.any(-1)
        torch.testing.assert_close(pi[valid_rows].sum(-1), torch.ones(int(valid_rows.sum())))
    q = critic(pi.flatten(-2), state)
    H = masked_mean(policy_entropy(logits, avail), mask)
    loss = -masked_mean(q, mask) + entropy_loss(H, "adaptive", 0.06)[0]
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in critic.parameters())
    assert (logits.grad[~mask] == 0).all()


def test_gumbel_straight_through_is_one_hot_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(64, 3, 5, requires_grad=True)
    avail = torch.ones(64, 3, 5, dtype=torch.bool)
    avail[:, :, 4] = False
    sample = actor_critic_input(logits, avail, "gumbel", tau=0.5)
    assert ((sample == 0) | (sample == 1)).all() and (sample.sum(-1) == 1).all()
    assert (sample[..., 4] == 0).all(), "an unavailable action is never sampled"
    (sample * torch.randn_like(sample)).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_masked_mean_ignores_nan_in_padding():
    x = torch.tensor([1.0, float("nan"), 3.0], requires_grad=True)
    m = masked_mean(x, torch.tensor([True, False, True]))
    m.backward()
    assert m.item() == 2.0 and torch.isfinite(x.grad).all() and x.grad[1] == 0
    assert math.isfinite(m.item())
