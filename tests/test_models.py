"""Networks: the multiplicative state-action association of C_Mix, agent inputs."""

from __future__ import annotations

import pytest
import torch

from lica.config import AgentConfig
from lica.models.agents import MultiAgentPolicy
from lica.models.critics import MixingCritic, MLPCritic, build_critic


def dq_du(critic, u, s):
    u = u.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(critic(u, s).sum(), u)
    return g


def test_mixing_critic_action_gradient_depends_on_state():
    torch.manual_seed(0)
    critic = MixingCritic(state_dim=6, n_agents=3, n_actions=5)
    u = torch.rand(1, 15)
    s1, s2 = torch.randn(1, 6), torch.randn(1, 6)
    assert not torch.allclose(dq_du(critic, u, s1), dq_du(critic, u, s2), atol=1e-4)


def test_mixing_critic_is_exactly_eq1():
    """Q = w2(s)ᵀ ReLU(W1(s)ᵀ u + b1(s)) + b2(s), recomputed by hand."""
    torch.manual_seed(1)
    c = MixingCritic(state_dim=4, n_agents=2, n_actions=3, embed_dim=8)
    s, u = torch.randn(5, 4), torch.rand(5, 6)
    W1 = c.hyper_w1(s).view(5, 6, 8)
    h = torch.relu(torch.einsum("bi,bih->bh", u, W1) + c.hyper_b1(s))
    q = (h * c.hyper_w2(s)).sum(-1) + c.hyper_b2(s).squeeze(-1)
    torch.testing.assert_close(c(u, s), q)
    assert not any("abs" in type(m).__name__.lower() for m in c.modules())


def test_reference_hypernetwork_size_is_the_default():
    c = MixingCritic(state_dim=10, n_agents=3, n_actions=5, embed_dim=64)
    first = c.hyper_w1[0]
    assert first.out_features == 64 * 3 * 5  # E = H·n·|A|
    small = MixingCritic(state_dim=10, n_agents=3, n_actions=5, hypernet_embed=32)
    assert small.hyper_w1[0].out_features == 32
    one = MixingCritic(state_dim=10, n_agents=3, n_actions=5, hypernet_layers=1)
    assert isinstance(one.hyper_w1, torch.nn.Linear)


def test_state_value_term_is_the_reference_mlp_by_default_and_deepens_on_request():
    """b2(s) is Linear(S, H) → ReLU → Linear(H, 1) by default (the reference code);
    ``value_layers``/``value_width`` give that many hidden ReLU layers of that width, and
    Q stays Eq. 1 with the deeper b2 (recomputed layer by layer)."""
    ref = MixingCritic(state_dim=10, n_agents=3, n_actions=5, embed_dim=8)
    assert [tuple(m.weight.shape) for m in ref.hyper_b2 if isinstance(m, torch.nn.Linear)] == [(8, 10), (1, 8)]
    torch.manual_seed(3)
    c = build_critic("mix", 10, 3, 5, 8, value_layers=2, value_width=16)
    lin = [m for m in c.hyper_b2 if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in lin] == [(16, 10), (16, 16), (1, 16)]
    s, u = torch.randn(4, 10), torch.rand(4, 15)
    b2 = lin[2](torch.relu(lin[1](torch.relu(lin[0](s)))))
    h = torch.relu(torch.einsum("bi,bih->bh", u, c.hyper_w1(s).view(4, 15, 8)) + c.hyper_b1(s))
    torch.testing.assert_close(c(u, s), (h * c.hyper_w2(s)).sum(-1) + b2.squeeze(-1))


def test_build_critic_selects_the_critic():
    assert isinstance(build_critic("mlp", 6, 3, 5), MLPCritic)
    assert isinstance(build_critic("mix", 6, 3, 5), MixingCritic)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_rnn_agent_unroll_matches_stepwise_values_and_gradients(dtype, tol):
    """unroll (fc1/fc2 on all steps, the recurrence as nn.GRU) against forward called step
    by step with the GRUCell: logits and every parameter's gradient."""
    torch.manual_seed(2)
    pol = MultiAgentPolicy(obs_dim=4, n_agents=3, n_actions=5, cfg=AgentConfig()).to(dtype)
    assert pol.fc1.weight.shape == (1, 4 + 5 + 3, 64)  # obs ⊕ last action ⊕ agent id
    obs = torch.randn(2, 6, 3, 4, dtype=dtype)
    acts = torch.nn.functional.one_hot(torch.randint(5, (2, 6, 3)), 5).to(dtype)
    weights = torch.randn(2, 6, 3, 5, dtype=dtype)

    def grads(logits):
        pol.zero_grad()
        (logits * weights).sum().backward()
        return {k: p.grad.clone() for k, p in pol.named_parameters()}

    unrolled = pol.unroll(obs, acts)
    g_unrolled = grads(unrolled)
    h, last, steps = pol.initial_state(2).to(dtype), torch.zeros(2, 3, 5, dtype=dtype), []
    for t in range(6):
        logits, h = pol(obs[:, t], last, h)
        steps.append(logits)
        last = acts[:, t]
    stepwise = torch.stack(steps, dim=1)
    torch.testing.assert_close(unrolled, stepwise, atol=tol, rtol=0)
    g_stepwise = grads(stepwise)
    assert set(g_unrolled) == set(g_stepwise) and "rnn.weight_hh" in g_unrolled
    for k in g_stepwise:
        torch.testing.assert_close(g_unrolled[k], g_stepwise[k], atol=tol, rtol=0, msg=k)


def test_unshared_mlp_agents_have_independent_parameters():
    pol = MultiAgentPolicy(obs_dim=4, n_agents=3, n_actions=5,
                           cfg=AgentConfig(type="mlp", hidden_dim=32, shared=False))
    assert pol.fc1.weight.shape == (3, 4 + 5 + 3, 32) and not pol.recurrent
    logits, _ = pol(torch.randn(2, 3, 4), torch.zeros(2, 3, 5), pol.initial_state(2))
    logits[:, 0].sum().backward()  # agent 0's output only
    assert pol.fc1.weight.grad[0].abs().sum() > 0
    assert (pol.fc1.weight.grad[1:] == 0).all(), "agent 0 must not use agents 1-2's parameters"
    with pytest.raises(ValueError, match="shared=false needs"):
        MultiAgentPolicy(4, 3, 5, AgentConfig(type="rnn", shared=False))


# -- the exact fast path for taken one-hot actions (algo.critic_fast_path) -----------------

def _taken_batch(b=5, t=7, n=3, a=4, s=6, dtype=torch.float32, seed=0):
    """Random states, padded episodes (``valid``) and actions drawn among random
    available actions (some actions unavailable in every row)."""
    g = torch.Generator().manual_seed(seed)
    state = torch.randn(b, t, s, generator=g, dtype=dtype)
    valid = torch.arange(t)[None, :] < torch.randint(1, t + 1, (b, 1), generator=g)
    avail = torch.rand(b, t, n, a, generator=g) < 0.6
    avail[..., 0] = True
    logits = torch.randn(b, t, n, a, generator=g).masked_fill(~avail, -1e10)
    actions = torch.distributions.Categorical(logits=logits).sample()
    return state, actions, valid


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("layers", [1, 2])
def test_fast_path_equals_dense_in_value_and_every_gradient(dtype, tol, layers):
    from lica.algos.losses import critic_loss

    torch.manual_seed(2)
    critic = MixingCritic(state_dim=6, n_agents=3, n_actions=4, embed_dim=8, hypernet_layers=layers).to(dtype)
    state, actions, valid = _taken_batch(dtype=dtype)
    targets = torch.randn(valid.shape, dtype=dtype)
    results = []
    for dense in (False, True):
        s = state.clone().requires_grad_(True)
        q = critic.q_taken(actions, s, valid, dense=dense)
        loss, _ = critic_loss(q, targets, valid)
        grads = torch.autograd.grad(loss, [s, *critic.parameters()])
        results.append((q, loss, grads))
    (q_f, loss_f, g_f), (q_d, loss_d, g_d) = results
    assert (q_f - q_d).abs().max().item() <= tol
    assert abs(loss_f.item() - loss_d.item()) <= tol
    for a, b in zip(g_f, g_d):
        assert (a - b).abs().max().item() <= tol
    assert g_f[1].abs().sum() > 0  # the check is not vacuous: gradients flow


def test_fast_path_gives_padded_cells_the_zero_action():
    torch.manual_seed(3)
    critic = MixingCritic(state_dim=6, n_agents=3, n_actions=4)
    state, actions, valid = _taken_batch()
    q = critic.q_taken(actions, state, valid)
    zero_action = critic(torch.zeros(*valid.shape, 12), state)
    torch.testing.assert_close(q[~valid], zero_action[~valid])


def test_mlp_critic_taken_actions_match_its_one_hot_forward():
    torch.manual_seed(4)
    critic = MLPCritic(6, 3, 4)
    state, actions, valid = _taken_batch()
    onehot = torch.nn.functional.one_hot(actions, 4).float() * valid[..., None, None]
    torch.testing.assert_close(critic.q_taken(actions, state, valid), critic(onehot.flatten(-2), state))
