"""One LICA update as a whole: the fast critic path changes no number, the actor step
sends no gradient into the critic, critic steps per batch and the target schedules."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from lica.algos import build_module
from lica.algos.losses import td_lambda_targets
from lica.models.agents import action_distribution
from tests.test_ablations import INFO, algo_config, run_update, synthetic_batch


def build(extra: list[str] | None = None, seed: int = 0):
    torch.manual_seed(seed)
    return build_module(algo_config("full", extra), INFO)


@pytest.mark.parametrize("extra", [[], ["algo.critic_updates=3"], ["ablation=cmlp"]])
def test_fast_and_dense_critic_paths_give_the_same_update(extra):
    fast = build(["algo.critic_fast_path=true", *extra])
    dense = copy.deepcopy(fast)
    dense.algo.critic_fast_path = False
    batch = synthetic_batch()
    m_fast, m_dense = run_update(fast, batch), run_update(dense, batch)
    for key in ("critic_loss", "critic_loss_final", "q_taken_mean", "target_mean", "critic_grad_norm",
                "actor_loss", "q_pi_mean", "actor_grad_norm"):
        assert m_fast[key] == pytest.approx(m_dense[key], rel=1e-5, abs=1e-6), key
    # Adam divides by the gradient's own scale, so a rounding difference in a ~1e-9
    # gradient can move a weight by ~1e-6; one Adam step moves weights by up to lr = 5e-4
    for (name, a), b in zip(fast.named_parameters(), dense.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_the_actor_step_sends_no_gradient_into_the_critic():
    module = build(["algo.critic_updates=2"])
    calls = {name: 0 for name, _ in module.critic.named_parameters()}
    for name, p in module.critic.named_parameters():
        p.register_hook(lambda grad, name=name: calls.__setitem__(name, calls[name] + 1))
    run_update(module, synthetic_batch())
    assert set(calls.values()) == {2}, calls  # one gradient per critic step, none from the actor step


def test_critic_steps_per_batch_and_hard_target_copies():
    module = build(["algo.critic_updates=3", "algo.target_update_interval=4"])
    batch = synthetic_batch()
    run_update(module, batch)
    assert module.critic_steps == 3
    assert any((a != b).any() for a, b in zip(module.critic.parameters(), module.target_critic.parameters()))
    metrics = run_update(module, batch)  # steps 4, 5, 6: copied at 4, two steps since
    assert module.critic_steps == 6 and metrics["target_age_critic_steps"] == 2


def test_soft_target_update_moves_the_target_by_tau():
    module = build(["algo.target_tau=0.25"])
    before = [p.detach().clone() for p in module.target_critic.parameters()]
    run_update(module, synthetic_batch())
    # after the one critic step the target moved a quarter of the way to the new critic
    for t0, t1, c in zip(before, module.target_critic.parameters(), module.critic.parameters()):
        torch.testing.assert_close(t1, t0 + 0.25 * (c - t0))


def test_critic_replay_trains_on_earlier_batches_and_is_checkpointed():
    module = build(["algo.critic_replay=2"])
    batches = [synthetic_batch(seed=s) for s in range(4)]
    for b in batches:
        run_update(module, b)
    assert [r.reward.tolist() for r in module.replay] == [b.reward.tolist() for b in batches[:1:-1]]
    ckpt = {}
    module._trainer = SimpleNamespace(loggers=[])  # on_save_checkpoint records the loggers' run ids
    module.on_save_checkpoint(ckpt)
    fresh = build(["algo.critic_replay=2"])
    fresh.on_load_checkpoint(ckpt)
    assert [r.obs.tolist() for r in fresh.replay] == [r.obs.tolist() for r in module.replay]


@pytest.mark.parametrize("extra", [[], ["algo.critic_replay=1"], ["algo.critic_replay=1", "algo.critic_updates=2",
                                                                  "algo.critic_minibatch_episodes=2"]])
def test_critic_diagnostics_describe_the_critic_before_the_update_on_the_new_episodes(extra):
    """critic_loss / q_taken_mean / target_mean: the critic as it was before this batch's
    steps, on the new episodes only (the replayed ones excluded), whether the first step
    used the whole batch or a minibatch; recomputed here from a copy of the module."""
    module = build(extra)
    run_update(module, synthetic_batch(seed=1))  # fills the replay where there is one
    before, new = copy.deepcopy(module), synthetic_batch(seed=2)
    metrics = run_update(module, new)
    mask = new.step_mask()
    with torch.no_grad():
        q = before.critic.q_taken(new.actions[:, :-1], new.state[:, :-1], new.filled[:, :-1], True)
        target_q = before.target_critic.q_taken(new.actions, new.state, new.filled, True).masked_fill(~new.filled, 0)
    targets = td_lambda_targets(target_q, new.reward, new.terminal(module.algo.bootstrap_on_timeout), mask,
                                module.algo.gamma, module.algo.td_lambda)
    cells = mask.sum()
    assert metrics["q_taken_mean"] == pytest.approx(float((q * mask).sum() / cells), rel=1e-5)
    assert metrics["target_mean"] == pytest.approx(float((targets * mask).sum() / cells), rel=1e-5)
    assert metrics["critic_loss"] == pytest.approx(float(((q - targets) ** 2 * mask).sum() / cells), rel=1e-5)


def test_the_actor_objective_is_q_of_the_policy_averaged_over_the_episodes_steps():
    """Eq. 4 (+ Eq. 6): q_pi_mean = the mean of Q(s_t, π_t) over the valid steps, and the
    actor's gradient norm that of −q_pi_mean + the entropy term, recomputed here with the
    critic on every cell of the batch and the padding masked out afterwards (the update
    evaluates the critic on the valid steps only).  critic_lr = 0 keeps the critic as copied."""
    module = build(["algo.critic_lr=0"])
    batch, before = synthetic_batch(), copy.deepcopy(module)
    assert not batch.step_mask().bool().all()  # the batch has padding
    metrics = run_update(module, batch)
    mask, avail = batch.step_mask(), batch.avail[:, :-1]
    logits = before.actor.unroll(batch.obs[:, :-1], batch.actions_onehot[:, :-1])
    probs = action_distribution(logits, avail).probs
    q = before.critic(probs.flatten(-2), batch.state[:, :-1])
    valid = mask.bool()
    q_mean = q[valid].sum() / valid.sum()
    entropy = (action_distribution(logits, avail).entropy().mean(-1) * mask).sum() / mask.sum()
    loss = -q_mean - before.algo.entropy_coef * entropy / entropy.detach()
    grads = torch.autograd.grad(loss, list(before.actor.parameters()))
    assert metrics["q_pi_mean"] == pytest.approx(q_mean.item(), rel=1e-5)
    assert metrics["actor_grad_norm"] == pytest.approx(torch.cat([g.flatten() for g in grads]).norm().item(),
                                                       rel=1e-4)


def test_a_target_schedule_that_may_never_copy_is_named():
    """The paper's MPE budget (1M env steps of 200-step episodes, 32 per batch) gives 157
    batches: one critic step each never reaches a 200-step copy interval."""
    from lica.algos.base import target_schedule_problem

    algo = algo_config("full")
    problem = target_schedule_problem(algo, 1, 1_000_000, 32, 200)
    assert "157 critic steps" in problem and "algo.target_update_interval=200" in problem
    assert target_schedule_problem(algo, 2, 1_000_000, 32, 200) is None  # 314 critic steps
    algo.target_tau = 0.01
    assert target_schedule_problem(algo, 1, 1_000_000, 32, 200) is None  # soft updates every step


def test_a_collapsed_policy_is_flagged_once(caplog):
    module = build()
    with caplog.at_level("WARNING", logger="lica"):
        module._flag_collapse({"policy_entropy": 1.2, "actor_grad_norm": 0.1})
        assert not caplog.records  # exploring
        module._flag_collapse({"policy_entropy": 0.001, "actor_grad_norm": 1e-9})
        module._flag_collapse({"policy_entropy": 0.0005, "actor_grad_norm": 1e-9})
    (record,) = caplog.records
    assert "collapsed" in record.getMessage() and "algo.entropy_coef" in record.getMessage()
