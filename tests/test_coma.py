"""COMA (Foerster et al., 2018), ``algo=coma``: the counterfactual advantage of Eq. 4 on
hand-checked numbers, the critic's counterfactual inputs, one update against an
independent computation and the config (the end-to-end run: tests/test_algorithms.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lica.algos import build_module
from lica.algos.coma import COMA, COMACritic, per_agent_td_lambda_targets
from lica.algos.losses import coma_advantage, td_lambda_targets
from lica.models.agents import action_distribution
from tests.conftest import compose_config
from tests.test_ablations import INFO, run_update, synthetic_batch


def test_advantage_of_the_taken_action_by_hand():
    """Two agents, three actions.  Agent 0: π = (0.2, 0.3, 0.5), Q(s,(u^-0,·)) = (1, 2, 3),
    took action 2: baseline 0.2·1 + 0.3·2 + 0.5·3 = 2.3, A = 3 − 2.3 = 0.7.
    Agent 1: action 2 unavailable (its Q of 100 must not count), logits (0, 0, 5) →
    π = (0.5, 0.5, 0), Q = (4, 0, 100), took action 1: baseline 0.5·4 + 0.5·0 = 2, A = −2."""
    dtype = torch.get_default_dtype()
    logits = torch.tensor([[[math.log(0.2), math.log(0.3), math.log(0.5)], [0.0, 0.0, 5.0]]], dtype=dtype)
    avail = torch.tensor([[[True, True, True], [True, True, False]]])
    probs = action_distribution(logits, avail).probs
    torch.testing.assert_close(probs, torch.tensor([[[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]]], dtype=dtype))
    q = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 0.0, 100.0]]], dtype=dtype)
    q_taken, baseline, adv = coma_advantage(q, probs, torch.tensor([[2, 1]]))
    torch.testing.assert_close(q_taken, torch.tensor([[3.0, 0.0]], dtype=dtype))
    torch.testing.assert_close(baseline, torch.tensor([[2.3, 2.0]], dtype=dtype))
    torch.testing.assert_close(adv, torch.tensor([[0.7, -2.0]], dtype=dtype))


def test_counterfactual_advantage_is_zero_in_expectation():
    """Σ_u π(u)·A(u) = 0 for every agent: the baseline does not bias the gradient."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 3, 5, generator=g)
    probs = torch.softmax(torch.randn(4, 3, 5, generator=g), -1)
    expected = torch.stack([coma_advantage(q, probs, torch.full((4, 3), u))[2] for u in range(5)], -1)
    torch.testing.assert_close((probs * expected).sum(-1), torch.zeros(4, 3), atol=1e-6, rtol=0)


def test_critic_sees_the_others_actions_but_not_its_own():
    torch.manual_seed(0)
    critic = COMACritic(state_dim=7, obs_dim=6, n_agents=3, n_actions=5)
    state, obs = torch.randn(2, 3, 7), torch.randn(2, 3, 3, 6)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 5, (2, 3, 3)), 5).float()
    inp = critic.inputs(state, obs, onehot)
    assert inp.shape == (2, 3, 3, 7 + 6 + 15 + 15 + 3)  # state, obs, u^-a, previous u, agent id
    q = critic(state, obs, onehot)
    assert q.shape == (2, 3, 3, 5)
    changed = onehot.clone()
    changed[:, -1, 0] = torch.roll(changed[:, -1, 0], 1, -1)  # agent 0's action at the last step
    q2 = critic(state, obs, changed)
    torch.testing.assert_close(q2[:, -1, 0], q[:, -1, 0])  # agent 0's own Q(s, (u^-0, ·)): unchanged
    assert not torch.allclose(q2[:, -1, 1:], q[:, -1, 1:])  # the other agents see u^0
    torch.testing.assert_close(q2[:, :-1], q[:, :-1])  # earlier steps: unchanged


def test_per_agent_targets_are_td_lambda_for_each_agent():
    batch = synthetic_batch()
    g = torch.Generator().manual_seed(1)
    target_q = torch.randn(*batch.filled.shape, INFO.n_agents, generator=g, dtype=batch.reward.dtype)
    mask, term = batch.step_mask(), batch.terminal(False)
    got = per_agent_td_lambda_targets(target_q, batch.reward, term, mask, 0.99, 0.8)
    for a in range(INFO.n_agents):
        torch.testing.assert_close(got[..., a], td_lambda_targets(target_q[..., a], batch.reward, term, mask, 0.99, 0.8))


def coma_algo(extra: list[str] | None = None):
    return OmegaConf.to_object(compose_config(["algo=coma", *(extra or [])])).algo


def test_one_update_matches_an_independent_computation():
    """Critic step first (per-agent TD(λ) loss of the pre-update critic), then the actor
    step with advantages of the *updated* critic: loss = −mean over valid cells and
    agents of A·log π(u^a), with π the softmax over available actions only."""
    torch.manual_seed(0)
    module = build_module(coma_algo(), INFO)
    assert isinstance(module, COMA)
    batch = synthetic_batch()
    critic0, actor0 = copy.deepcopy(module.critic), copy.deepcopy(module.actor)
    metrics = run_update(module, batch)

    mask = batch.step_mask()
    s, o, u1h, u = batch.state, batch.obs, batch.actions_onehot, batch.actions
    with torch.no_grad():
        # critic loss of the pre-update critic against targets of the (identical) target critic
        target_q = critic0(s, o, u1h).gather(-1, u.unsqueeze(-1)).squeeze(-1) * batch.filled[..., None]
        q0 = critic0(s[:, :-1], o[:, :-1], u1h[:, :-1])
        q_new = module.critic(s[:, :-1], o[:, :-1], u1h[:, :-1])
        logits = actor0.unroll(o[:, :-1], u1h[:, :-1])
    sq, pg, cells = 0.0, 0.0, 0
    for b, t in mask.nonzero().tolist():
        for a in range(INFO.n_agents):
            y = td_lambda_targets(target_q[b:b + 1, :, a], batch.reward[b:b + 1], batch.terminal(False)[b:b + 1],
                                  mask[b:b + 1], 0.99, 0.8)[0, t]
            ua = u[b, t, a].item()
            sq += (q0[b, t, a, ua] - y).item() ** 2
            av = batch.avail[b, t, a]
            p = torch.zeros(INFO.n_actions, dtype=logits.dtype)
            p[av] = torch.softmax(logits[b, t, a][av], -1)
            adv = q_new[b, t, a, ua] - (p * q_new[b, t, a]).sum()
            pg += (adv * torch.log(p[ua])).item()
            cells += 1
    assert metrics["critic_loss"] == pytest.approx(sq / cells, rel=1e-5)
    assert metrics["pg_loss"] == pytest.approx(-pg / cells, rel=1e-5, abs=1e-7)
    assert metrics["actor_loss"] == pytest.approx(metrics["pg_loss"])  # PyMARL's COMA: no entropy term (beta=0)
    for key in ("critic_loss", "td_error_abs", "q_taken_mean", "critic_grad_norm", "actor_loss",
                "policy_entropy", "actor_grad_norm"):
        assert math.isfinite(metrics[key]), key
    # both networks moved; the target critic did not (interval 200)
    assert not torch.equal(module.critic.fc1.weight, critic0.fc1.weight)
    assert not torch.equal(module.actor.fc1.weight, actor0.fc1.weight)
    torch.testing.assert_close(module.target_critic.fc1.weight, critic0.fc1.weight, rtol=0, atol=0)
    for p in [*module.actor.parameters(), *module.critic.parameters()]:
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_entropy_bonus_is_optional():
    torch.manual_seed(0)
    module = build_module(coma_algo(["algo.beta=0.5"]), INFO)
    metrics = run_update(module, synthetic_batch())
    assert metrics["actor_loss"] == pytest.approx(metrics["pg_loss"] - 0.5 * metrics["policy_entropy"])


def test_coma_config_is_pymarls():
    cfg = compose_config(["algo=coma", "env=smac_5m_vs_6m"])  # a task that keeps the algo's rates
    assert (cfg.algo.name, cfg.algo.actor_lr, cfg.algo.critic_lr, cfg.algo.td_lambda) == ("coma", 0.0005, 0.0005, 0.8)
    assert (cfg.algo.target_update_interval, cfg.algo.grad_norm_clip, cfg.algo.gamma) == (200, 10.0, 0.99)
    assert (cfg.algo.entropy, cfg.algo.beta, cfg.name) == ("vanilla", 0.0, "coma_5m_vs_6m")


@pytest.mark.parametrize("ablation", ["cmlp", "gumbel", "[cmlp,gumbel]"])
def test_coma_refuses_lica_ablations_at_compose_time(ablation):
    """COMA's config has no critic or actor-input choice: LICA's ablations of those do not compose."""
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["algo=coma", f"ablation={ablation}"])
    assert "not in 'COMAConfig'" in str(err.value) and "In 'ablation/" in str(err.value)


def test_coma_accepts_the_entropy_ablation():
    assert isinstance(build_module(coma_algo(["ablation=vanilla_entropy"]), INFO), COMA)
