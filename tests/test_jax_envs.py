"""The JaxMARL backend (lica/envs/jax.py): MPE Cooperative Navigation and SMAX as VecEnvs.

Builds two envs once per module (spread n=3, SMAX 2s3z; ~20-30 s of XLA compilation on a
2-core CPU) and checks the VecEnv contract of lica/envs/base.py on them.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax", reason="the JaxMARL backend needs the 'jax' extra (jax + jaxmarl)")
pytest.importorskip("jaxmarl", reason="the JaxMARL backend needs the 'jax' extra (jax + jaxmarl)")

import jax.numpy as jnp  # noqa: E402

from lica.config import EnvConfig  # noqa: E402
from lica.envs import make_vec_env  # noqa: E402
from lica.envs.base import EnvInfo, Observation, VecStep  # noqa: E402

pytestmark = pytest.mark.jax

N = 8  # envs per vec env (compile time does not depend on it)
SEEDS = np.arange(100, 100 + N)


@pytest.fixture(scope="module")
def spread():
    cfg = EnvConfig(backend="jax", scenario="spread", n_agents=3, episode_limit=25)
    env = make_vec_env(cfg, N)
    yield env
    env.close()


@pytest.fixture(scope="module")
def smax():
    cfg = EnvConfig(backend="jax", scenario="2s3z", n_agents=None, episode_limit=None)
    env = make_vec_env(cfg, N)
    yield env
    env.close()


def random_valid_actions(avail: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random available action per agent (avail: (N, n, A) bool)."""
    return np.argmax(rng.random(avail.shape) * avail + avail, axis=-1)


def check_shapes(info: EnvInfo, out, n_envs: int) -> None:
    n, o, s, a = info.n_agents, info.obs_dim, info.state_dim, info.n_actions
    assert out.obs.shape == (n_envs, n, o) and out.obs.dtype == np.float32
    assert out.state.shape == (n_envs, s) and out.state.dtype == np.float32
    assert out.avail.shape == (n_envs, n, a) and out.avail.dtype == np.bool_
    if isinstance(out, VecStep):
        assert out.reward.shape == (n_envs,) and out.reward.dtype == np.float32
        for flag in (out.terminated, out.truncated, out.won):
            assert flag.shape == (n_envs,) and flag.dtype == np.bool_
    assert out.obs.flags.writeable and out.avail.flags.writeable


def test_spread_info_shapes_and_masks(spread):
    assert spread.info == EnvInfo(n_agents=3, n_actions=5, obs_dim=18, state_dim=54,
                                  episode_limit=25, reports_wins=False)
    assert spread.agents == ("agent_0", "agent_1", "agent_2")
    first = spread.reset(SEEDS)
    assert isinstance(first, Observation)
    check_shapes(spread.info, first, N)
    # state = concatenated observations (like the mpe backend)
    np.testing.assert_array_equal(first.state, first.obs.reshape(N, -1))
    assert first.avail.all()
    step = spread.step(np.zeros((N, 3), dtype=np.int64), np.ones(N, dtype=bool))
    check_shapes(spread.info, step, N)
    assert step.avail.all() and not step.won.any() and not step.terminated.any()


def test_smax_info_shapes_and_masks(smax):
    info = smax.info
    # 2s3z: 5 allies, actions = 4 moves + stop + 5 enemies; SMAX unit_list obs / world state
    assert (info.n_agents, info.n_actions, info.episode_limit, info.reports_wins) == (
        5, 10, 100, True)
    assert (info.obs_dim, info.state_dim) == (127, 120)
    assert smax.agents == tuple(f"ally_{i}" for i in range(5))
    rng = np.random.default_rng(0)
    out = smax.reset(SEEDS)
    check_shapes(info, out, N)
    for _ in range(10):
        assert out.avail.any(axis=-1).all()  # >= 1 action per agent while running
        out = smax.step(random_valid_actions(out.avail, rng), np.ones(N, dtype=bool))
        check_shapes(info, out, N)


@pytest.mark.parametrize("which", ["spread", "smax"])
def test_same_seeds_same_episodes(which, request):
    env = request.getfixturevalue(which)
    rng = np.random.default_rng(1)

    def rollout(seeds, actions=None):
        out = env.reset(seeds)
        obs = [out.obs]
        acts = actions or []
        for t in range(5):
            if actions is None:
                acts.append(random_valid_actions(out.avail, rng))
            out = env.step(acts[t], np.ones(N, dtype=bool))
            obs.append(out.obs)
        return np.stack(obs), acts

    a, acts = rollout(SEEDS)
    b, _ = rollout(SEEDS, acts)
    np.testing.assert_array_equal(a, b)
    # a seed's episode does not depend on its slot in the batch
    rev = env.reset(SEEDS[::-1])
    np.testing.assert_array_equal(rev.obs[::-1], a[0])
    other = env.reset(SEEDS + 1000)
    assert not np.allclose(other.obs, a[0])
    # 64-bit seeds work and stay distinct from their low 32 bits
    big = env.reset(SEEDS + (1 << 40))
    assert not np.allclose(big.obs, a[0])


def spread_team_reward(obs: np.ndarray) -> np.ndarray:
    """Paper's Cooperative Navigation reward, recomputed from the observations alone.

    obs[a] = [vel(2), pos(2), landmark_rel(2n), ...]; agents' radius 0.15.
    """
    n_envs, n = obs.shape[:2]
    pos = obs[:, :, 2:4]  # (N, n, 2)
    landmarks = obs[:, 0, 4:4 + 2 * n].reshape(n_envs, n, 2) + pos[:, :1]  # (N, L, 2)
    dist = np.linalg.norm(landmarks[:, :, None] - pos[:, None], axis=-1)  # (N, L, n)
    cover = -dist.min(axis=2).sum(axis=1)
    pair = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
    i, j = np.triu_indices(n, k=1)
    collisions = (pair[:, i, j] < 0.3).sum(axis=1)
    return cover - collisions, collisions


def test_spread_reward_formula_and_time_limit(spread):
    rng = np.random.default_rng(2)
    seeds = np.arange(N)
    active = np.ones(N, dtype=bool)
    total_collisions = 0
    for episode in range(4):
        out = spread.reset(seeds + N * episode)
        for t in range(1, 26):
            out = spread.step(rng.integers(0, 5, size=(N, 3)), active)
            expected, collisions = spread_team_reward(out.obs)
            np.testing.assert_allclose(out.reward, expected, rtol=1e-5, atol=1e-5)
            total_collisions += collisions.sum()
            assert not out.terminated.any()
            assert out.truncated.all() == (t == 25) and out.truncated.any() == (t == 25)
    assert total_collisions > 0  # the collision term was exercised


def test_smax_battles_end_with_win_flags(smax):
    """Random valid actions: every battle ends within the limit, exactly one of
    terminated / truncated, a win only on a real end."""
    rng = np.random.default_rng(3)
    out = smax.reset(SEEDS)
    active = np.ones(N, dtype=bool)
    ended_terminated = np.zeros(N, dtype=bool)
    for t in range(1, smax.info.episode_limit + 1):
        out = smax.step(random_valid_actions(out.avail, rng), active)
        assert out.avail[active].any(axis=-1).all()
        assert not (out.terminated & out.truncated).any()
        assert not (out.won & ~out.terminated).any()
        ended = (out.terminated | out.truncated) & active
        ended_terminated |= out.terminated & active
        active &= ~ended
        if not active.any():
            break
    assert not active.any(), "every episode ends by episode_limit"
    assert ended_terminated.any(), "random allies lose some 2s3z battles before the limit"


def test_smax_won_and_lost_flags(smax):
    """Doctor the batched SMAX state: enemies at 0 health -> a win (+1 bonus), allies at
    0 health -> a loss; both are real ends (terminated)."""
    smax.reset(SEEDS)
    env_state, keys, t = smax._carry
    health = env_state.state.unit_health
    n_allies = smax.info.n_agents
    win_rows, lose_rows = jnp.arange(N) < 2, (jnp.arange(N) >= 2) & (jnp.arange(N) < 4)
    health = jnp.where(win_rows[:, None] & (jnp.arange(health.shape[1]) >= n_allies), 0.0, health)
    health = jnp.where(lose_rows[:, None] & (jnp.arange(health.shape[1]) < n_allies), 0.0, health)
    inner = env_state.state.replace(unit_health=health)
    smax._carry = (env_state.replace(state=inner), keys, t)
    out = smax.step(np.full((N, n_allies), 4), np.ones(N, dtype=bool))  # everyone stops
    np.testing.assert_array_equal(out.won, np.arange(N) < 2)
    np.testing.assert_array_equal(out.terminated, np.arange(N) < 4)
    assert not out.truncated.any()
    # won_battle_bonus 1, no damage dealt; the largest return (1 + bonus) is scaled to 20 as in SMAC
    np.testing.assert_allclose(out.reward[:2], 10.0)
    # a dead ally can only "stop"
    assert (out.avail[2:4, :, 4]).all() and not out.avail[2:4][..., [0, 1, 2, 3, 5]].any()


@pytest.mark.parametrize("which", ["spread", "smax"])
def test_inactive_envs_are_frozen(which, request):
    """An inactive env keeps its state (not stepped, not auto-reset): after sitting out
    some calls it resumes exactly where it stopped, and the active envs are unaffected."""
    env = request.getfixturevalue(which)
    rng = np.random.default_rng(4)
    out = env.reset(SEEDS)
    actions = []
    for _ in range(6):
        actions.append(random_valid_actions(out.avail, rng))
        out = env.step(actions[-1], np.ones(N, dtype=bool))
    straight = out

    def with_extra_calls(active_during_extra):
        out = env.reset(SEEDS)
        for k in range(6):
            if k == 2:  # three extra calls; env 1 sits them out when inactive
                for _ in range(3):
                    out = env.step(np.argmax(out.avail, axis=-1), active_during_extra)
            out = env.step(actions[k], np.ones(N, dtype=bool))
        return out

    paused = np.ones(N, dtype=bool)
    paused[1] = False
    b = with_extra_calls(paused)
    c = with_extra_calls(np.ones(N, dtype=bool))
    # env 1 paused: same as never having seen the extra calls
    for field in ("obs", "state", "avail", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(b, field)[1], getattr(straight, field)[1])
    assert not np.array_equal(c.obs[1], straight.obs[1])  # the extra calls do matter
    # the other envs do not notice that env 1 was paused
    others = np.arange(N) != 1
    for field in ("obs", "state", "avail", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(b, field)[others], getattr(c, field)[others])


def test_no_recompilation_after_warm_up(spread):
    spread.reset(SEEDS)
    for _ in range(3):
        spread.step(np.zeros((N, 3), dtype=np.int32), np.ones(N, dtype=bool))
    assert spread._step_fn._cache_size() == 1 and spread._reset_fn._cache_size() == 1


def test_config_errors():
    def build(scenario, n_agents=None, episode_limit=None, **args):
        return make_vec_env(EnvConfig(backend="jax", scenario=scenario, n_agents=n_agents,
                                      episode_limit=episode_limit, args=args), 2)

    with pytest.raises(ValueError, match=r"Unknown jax env scenario 'nope'.*2s3z.*5m_vs_6m"):
        build("nope")
    with pytest.raises(ValueError, match="MMM2.*no SMAX counterpart"):
        build("MMM2")
    with pytest.raises(ValueError, match="has 5 allies"):
        build("5m_vs_6m", n_agents=3)
    with pytest.raises(ValueError, match="disagree"):
        build("2s3z", episode_limit=50, max_steps=60)
    with pytest.raises(ValueError, match="local_ratio"):
        build("spread", n_agents=3, local_ratio=0.5)


def test_reset_and_step_argument_errors(spread):
    with pytest.raises(ValueError, match="one seed per env"):
        spread.reset(np.arange(N + 1))
    with pytest.raises(ValueError, match="seeds must be >= 0"):
        spread.reset(-np.ones(N, dtype=np.int64))
    spread.reset(SEEDS)
    with pytest.raises(ValueError, match="step expects actions"):
        spread.step(np.zeros((N, 2), dtype=np.int64), np.ones(N, dtype=bool))


@pytest.mark.slow
@pytest.mark.parametrize("env_name,wins", [("smax_2s3z", True), ("jax_spread", False)])
def test_short_lica_run_on_jax_backends(tmp_path, env_name, wins):
    import csv

    from lica.train import train
    from tests.conftest import compose_config

    cfg = compose_config([f"env={env_name}", "trainer.max_env_steps=600", "rollout.batch_episodes=8",
                          "rollout.test_episodes=4", "rollout.eval_interval=300",
                          "trainer.enable_progress_bar=false", "env.episode_limit=20"])
    summary = train(cfg, run_dir=tmp_path)
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    tested = [r for r in rows if r.get("test_return_mean")]
    assert summary["env_steps"] >= 600 and len(tested) >= 2
    assert any(r.get("critic_loss") for r in rows)
    assert ("test_battle_won_mean" in summary["final_test"]) == wins


def test_smax_state_lies_in_unit_range(smax):
    """The critic's state is scaled like SMAX's observations: positions, cooldowns and
    type ids within [0, 1] (SMAX's raw world state has positions in map units, 0..32)."""
    rng = np.random.default_rng(3)
    out = smax.reset(SEEDS)
    states = [out.state]
    for _ in range(20):
        out = smax.step(random_valid_actions(out.avail, rng), np.ones(N, dtype=bool))
        states.append(out.state)
    states = np.stack(states)
    assert states.min() >= 0.0 and states.max() <= 1.0
    assert states.max() > 0.5  # positions of units on the far side of the map are not squashed to 0
