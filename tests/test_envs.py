"""mpe2 tasks and the worker pool: rewards, shapes, lock-step, failures."""

from __future__ import annotations

import os
import signal
import sys
import time
from functools import partial

import numpy as np
import pytest

from lica.config import EnvConfig
from lica.envs import make_single_env, make_vec_env
from lica.envs.base import EnvInfo, MultiAgentEnv, Observation
from lica.envs.mpe import CooperativeNavigation, PredatorPrey
from lica.envs.vec import EnvWorkerError, WorkerPoolVecEnv


def test_spread_reward_is_the_paper_team_reward():
    env = CooperativeNavigation(n_agents=3, episode_limit=25)
    info = env.get_env_info()
    assert (info.n_agents, info.n_actions, info.obs_dim, info.state_dim) == (3, 5, 18, 54)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    world = env._env.world
    saw_collision = False
    for t in range(25):
        for k, a in enumerate(world.agents[1:], 1):  # pile agents up now and then: collisions
            if t % 5 == 0:
                a.state.p_pos = world.agents[0].state.p_pos + 0.05 * k
        ob, r, term, trunc, _ = env.step(rng.integers(5, size=3))
        P = np.array([a.state.p_pos for a in world.agents])
        L = np.array([l.state.p_pos for l in world.landmarks])
        dist = sum(min(np.linalg.norm(p - l) for p in P) for l in L)
        pairs = sum(np.linalg.norm(P[i] - P[j]) < 0.3 for i in range(3) for j in range(i + 1, 3))
        saw_collision |= pairs > 0
        assert r == pytest.approx(-dist - pairs)
        assert ob.obs.shape == (3, 18) and ob.state.shape == (54,) and ob.avail.all()
        np.testing.assert_allclose(ob.state, ob.obs.reshape(-1))
        assert not term and trunc == (t == 24)
    assert saw_collision


def test_spread5_and_episode_limit():
    env = make_single_env(EnvConfig(backend="mpe", scenario="spread", n_agents=5, episode_limit=7))
    assert env.get_env_info().n_agents == 5
    env.reset(seed=0)
    ends = [env.step(np.zeros(5, int))[3] for _ in range(7)]
    assert ends == [False] * 6 + [True]


def test_reset_seed_fixes_the_episode():
    env = CooperativeNavigation()
    a = env.reset(seed=11).obs.copy()
    env.reset(seed=12)
    np.testing.assert_array_equal(env.reset(seed=11).obs, a)


def test_unknown_scenario_and_backend_are_clear():
    with pytest.raises(ValueError, match="Unknown mpe scenario 'sprad'"):
        make_single_env(EnvConfig(backend="mpe", scenario="sprad"))
    with pytest.raises(ValueError, match="Unknown env backend 'gym'"):
        make_single_env(EnvConfig(backend="gym", scenario="spread"))


def _rollout(vec, steps=12, seed=0):
    rng = np.random.default_rng(seed)
    obs = [vec.reset(np.arange(vec.num_envs)).obs.copy()]
    rewards = []
    for _ in range(steps):
        res = vec.step(rng.integers(5, size=(vec.num_envs, vec.info.n_agents)), np.ones(vec.num_envs, bool))
        obs.append(res.obs.copy())
        rewards.append(res.reward.copy())
    return np.stack(obs), np.stack(rewards)


def test_worker_pool_matches_in_process():
    cfg = EnvConfig(backend="mpe", scenario="spread", n_agents=3, episode_limit=25)
    with make_vec_env(cfg, 4, num_workers=0) as local, make_vec_env(cfg, 4, num_workers=2) as pooled:
        assert local.info == pooled.info
        o1, r1 = _rollout(local)
        o2, r2 = _rollout(pooled)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)


def test_inactive_envs_are_not_stepped():
    with make_vec_env(EnvConfig(backend="mpe", scenario="spread"), 2, num_workers=0) as vec:
        first = vec.reset(np.array([1, 2])).obs.copy()
        res = vec.step(np.ones((2, 3), int), np.array([True, False]))
        assert not np.array_equal(res.obs[0], first[0])
        np.testing.assert_array_equal(res.obs[1], first[1])


class _Crashing(MultiAgentEnv):
    """A test env that fails on purpose: raises, exits hard, or hangs at step ``at``."""

    def __init__(self, mode: str, at: int = 2) -> None:
        self.mode, self.at, self.t = mode, at, 0

    def get_env_info(self) -> EnvInfo:
        return EnvInfo(n_agents=2, n_actions=3, obs_dim=1, state_dim=1, episode_limit=10)

    def _ob(self) -> Observation:
        return Observation(np.zeros((2, 1), np.float32), np.zeros(1, np.float32), np.ones((2, 3), bool))

    def reset(self, seed=None) -> Observation:
        self.t = 0
        return self._ob()

    def step(self, actions):
        self.t += 1
        if self.t == self.at:
            if self.mode == "raise":
                raise RuntimeError("boom from the env")
            if self.mode == "exit":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "hang":
                time.sleep(3600)
        return self._ob(), 0.0, False, False, {}


@pytest.mark.parametrize("mode,match", [("raise", "boom from the env"), ("exit", "died with exit code -9"),
                                        ("hang", "did not answer within 2 s")])
def test_failing_worker_gives_a_clear_error_not_a_hang(mode, match):
    vec = WorkerPoolVecEnv(partial(_Crashing, mode), num_envs=2, num_workers=2, timeout_s=2.0)
    vec.reset(np.zeros(2, np.int64))
    vec.step(np.zeros((2, 2), int), np.ones(2, bool))
    started = time.time()
    with pytest.raises(EnvWorkerError, match=match) as err:
        vec.step(np.zeros((2, 2), int), np.ones(2, bool))
    assert "env worker" in str(err.value) and time.time() - started < 15
    assert all(not p.is_alive() for p in vec._processes), "workers are cleaned up"


def test_pool_rejects_uneven_split():
    with pytest.raises(ValueError, match="cannot be split evenly"):
        WorkerPoolVecEnv(partial(_Crashing, "raise"), num_envs=5, num_workers=2)


def test_predator_prey_prey_is_random_and_reward_is_distance():
    env = PredatorPrey(episode_limit=50)
    info = env.get_env_info()
    assert info.n_agents == 3  # only predators learn
    env.reset(seed=0)
    world = env._env.world
    prey = env._prey
    preds = [a for a in world.agents if a.adversary]
    moves = []
    for _ in range(50):
        before = prey.state.p_vel.copy()
        ob, r, term, trunc, inf = env.step(np.zeros(3, int))
        moves.append(tuple(np.sign(prey.state.p_vel - before * 0.75).round(3)))
        gaps = [np.linalg.norm(p.state.p_pos - prey.state.p_pos) for p in preds]
        caught = any(g < p.size + prey.size for g, p in zip(gaps, preds))
        assert r == pytest.approx(-min(gaps) + (10.0 if caught else 0.0))
        assert term == caught
        if term or trunc:
            break
    assert len(set(moves)) > 2, "the prey's actions vary (random), although predators do nothing"


def test_predator_prey_capture_ends_with_bonus():
    env = PredatorPrey(episode_limit=50, capture_bonus=10.0)
    env.reset(seed=1)
    pred = next(a for a in env._env.world.agents if a.adversary)
    pred.state.p_pos = env._prey.state.p_pos + 0.01
    _, r, term, trunc, info = env.step(np.zeros(3, int))
    assert term and not trunc and info["captured"] and r > 9.0


def test_missing_optional_extra_names_the_install_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith(("jax.", "jaxmarl")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "lica.envs.jax", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_jax)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[jax\]'"):
        make_vec_env(EnvConfig(backend="jax", scenario="spread"), 2)
