"""The fused JAX collector (lica/rollout/jax_collector.py) against the torch actor and the
step-wise collector it replaces for the jax backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("jax", reason="the fused collector needs the 'jax' extra (jax + jaxmarl)")
pytest.importorskip("jaxmarl", reason="the fused collector needs the 'jax' extra (jax + jaxmarl)")

import jax.numpy as jnp  # noqa: E402

from lica.config import AgentConfig, EnvConfig  # noqa: E402
from lica.envs import make_vec_env  # noqa: E402
from lica.models.agents import MultiAgentPolicy, action_distribution  # noqa: E402
from lica.rollout import make_collector  # noqa: E402
from lica.rollout.collector import Collector  # noqa: E402
from lica.rollout.jax_collector import ActorSpec, JaxCollector, actor_params, policy_step  # noqa: E402

pytestmark = pytest.mark.jax
N = 16
FIELDS = ("obs", "state", "avail", "actions", "actions_onehot", "filled", "reward", "terminated", "truncated")


def env_cfg(which: str) -> EnvConfig:
    if which == "spread":
        return EnvConfig(backend="jax", scenario="spread", n_agents=3, episode_limit=25)
    return EnvConfig(backend="jax", scenario="2s3z", n_agents=None, episode_limit=None)


@pytest.fixture(scope="module", params=["spread", "smax"])
def pair(request):
    """A fused and a step-wise collector on two copies of the same env, and an actor."""
    fused_env, step_env = make_vec_env(env_cfg(request.param), N), make_vec_env(env_cfg(request.param), N)
    info = fused_env.info
    torch.manual_seed(3)
    policy = MultiAgentPolicy(info.obs_dim, info.n_agents, info.n_actions, AgentConfig())
    fused, step = make_collector(fused_env), Collector(step_env)
    yield fused, step, policy
    fused_env.close()
    step_env.close()


@pytest.mark.parametrize("agent", [AgentConfig(), AgentConfig(type="mlp", hidden_dim=32, shared=False),
                                   AgentConfig(type="mlp", obs_last_action=False, obs_agent_id=False)])
def test_policy_step_matches_the_torch_actor(agent):
    torch.manual_seed(0)
    n, obs_dim, n_actions, batch = 3, 7, 4, 5
    policy = MultiAgentPolicy(obs_dim, n, n_actions, agent)
    obs = torch.randn(batch, n, obs_dim)
    last = torch.nn.functional.one_hot(torch.randint(n_actions, (batch, n)), n_actions).float()
    hidden = torch.randn(batch, n, agent.hidden_dim) if policy.recurrent else policy.initial_state(batch)
    with torch.no_grad():
        want_logits, want_hidden = policy(obs, last, hidden)
    params = {k: jnp.asarray(v) for k, v in actor_params(policy).items()}
    logits, new_hidden = policy_step(params, ActorSpec.of(policy), jnp.asarray(obs.numpy()),
                                     jnp.asarray(last.numpy()), jnp.asarray(hidden.numpy()))
    np.testing.assert_allclose(np.asarray(logits), want_logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(new_hidden), want_hidden.numpy(), rtol=1e-5, atol=1e-5)


def test_make_collector_picks_the_fused_collector(pair):
    fused, step, _ = pair
    assert isinstance(fused, JaxCollector) and type(step) is Collector


def test_greedy_batches_equal_the_step_wise_collector(pair):
    """Same seeds, same greedy actor: the fused program records exactly what the Python
    loop records (every field, padding and masks included)."""
    fused, step, policy = pair
    seeds = np.arange(500, 500 + N)
    got = fused.collect(policy, seeds, greedy=True)
    want = step.collect(policy, seeds, greedy=True)
    got_stats, want_stats = got.stats, want.stats
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)
    np.testing.assert_allclose(got_stats.returns, want_stats.returns, rtol=1e-5)
    np.testing.assert_array_equal(got_stats.lengths, want_stats.lengths)
    np.testing.assert_array_equal(got_stats.won, want_stats.won)


def test_sampled_actions_follow_the_actors_distribution(pair):
    """Training actions are available and, over all recorded (env, step, agent) cells,
    drawn with the probabilities the torch actor gives on the recorded histories."""
    fused, _, policy = pair
    g = torch.Generator().manual_seed(11)
    counts, expected, variance = 0.0, 0.0, 0.0
    for i in range(4):
        batch = fused.collect(policy, np.arange(N) + 100 * i, greedy=False, generator=g)
        with torch.no_grad():
            probs = action_distribution(policy.unroll(batch.obs, batch.actions_onehot), batch.avail).probs
        cells = batch.filled[..., None].expand(batch.actions.shape)  # (B, T+1, n)
        chosen_avail = batch.avail.gather(-1, batch.actions[..., None]).squeeze(-1)
        assert chosen_avail[cells].all(), "an unavailable action was sampled"
        p = probs[cells]  # (cells, A)
        counts = counts + batch.actions_onehot[cells].sum(0)
        expected = expected + p.sum(0)
        variance = variance + (p * (1 - p)).sum(0)
    z = (counts - expected) / variance.clamp_min(1e-6).sqrt()
    assert z.abs().max() < 5, f"action counts far from the actor's probabilities: z = {z}"


def test_same_generator_state_same_batch(pair):
    fused, _, policy = pair
    seeds = np.arange(N)
    a = fused.collect(policy, seeds, generator=torch.Generator().manual_seed(5))
    b = fused.collect(policy, seeds, generator=torch.Generator().manual_seed(5))
    c = fused.collect(policy, seeds, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.actions, b.actions) and torch.equal(a.obs, b.obs)
    assert not torch.equal(a.actions, c.actions)


def test_random_episodes_counts_env_steps(pair):
    fused, _, _ = pair
    steps = fused.random_episodes(np.arange(N), torch.Generator().manual_seed(0))
    limit = fused.env.info.episode_limit
    if fused.env.info.reports_wins:  # SMAX battles may end early
        assert N <= steps <= N * limit
    else:
        assert steps == N * limit
