"""The paper's MPE tasks on mpe2 (PettingZoo's Multi-Particle Environments, now ``mpe2``).

Both tasks use mpe2's own scenarios and physics (``World.step``).  They skip the
PettingZoo AEC/parallel wrappers, which cost about half the step time, and drive the
raw environment directly: set every agent's action, one ``world.step()``, then read
observations with the scenario's ``observation``.  Rewards are the paper's shared team
rewards (LICA_SPEC §8), computed here from positions, not mpe2's per-agent rewards.

* :class:`CooperativeNavigation` (``scenario: spread``, ``simple_spread``): n agents, n
  landmarks, actions [no-op, left, right, down, up];
  ``r_t = -Σ_landmarks min_agents ‖p_agent - p_landmark‖ - (number of colliding agent pairs)``.
* :class:`PredatorPrey` (``scenario: predator_prey``, ``simple_tag``): 3 learned
  predators, 1 faster prey that acts uniformly at random (not learned), 2 obstacles;
  ``r_t = -min_predators ‖p_predator - p_prey‖`` and, on capture (a predator touches
  the prey), ``+capture_bonus`` and the episode terminates.

Observations are mpe2's; the global state is the concatenation of all agents'
observations (what mpe2's ``state()`` returns).  Every action is always available.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lica.config import EnvConfig
from lica.envs.base import EnvInfo, MultiAgentEnv, Observation


class _MPETask(MultiAgentEnv):
    """Shared machinery: an mpe2 raw env driven one world step at a time."""

    n_actions = 5

    def __init__(self, raw_env: Any, learners: list[Any], episode_limit: int) -> None:
        if episode_limit < 1:
            raise ValueError(f"episode_limit must be >= 1, got {episode_limit}.")
        self._env = raw_env
        self._world = raw_env.world
        self._scenario = raw_env.scenario
        self._learners = learners
        self._learner_rows = [raw_env.world.agents.index(a) for a in learners]
        self.episode_limit = episode_limit
        self._t = 0
        self._avail = np.ones((len(learners), self.n_actions), dtype=bool)
        self._info = EnvInfo(
            n_agents=len(learners),
            n_actions=self.n_actions,
            obs_dim=len(self._scenario.observation(learners[0], self._world)),
            state_dim=sum(len(self._scenario.observation(a, self._world)) for a in self._world.agents),
            episode_limit=episode_limit,
        )

    def get_env_info(self) -> EnvInfo:
        return self._info

    def _observe(self) -> Observation:
        """Each agent's observation once; the state is their concatenation (mpe2's ``state()``)."""
        per_agent = [self._scenario.observation(a, self._world) for a in self._world.agents]
        obs = np.stack([per_agent[i] for i in self._learner_rows]).astype(np.float32)
        return Observation(obs, np.concatenate(per_agent).astype(np.float32), self._avail)

    def _act(self, agent: Any, action: int) -> None:
        self._env._set_action([int(action)], agent, self._env.action_spaces[agent.name])

    def reset(self, seed: int | None = None) -> Observation:
        self._env.reset(seed=seed)
        self._t = 0
        return self._observe()

    def _advance(self, actions: np.ndarray) -> None:
        if len(actions) != len(self._learners):
            raise ValueError(f"expected {len(self._learners)} actions, got {len(actions)}")
        for agent, action in zip(self._learners, actions):
            self._act(agent, action)
        self._world.step()
        self._t += 1

    def _positions(self, entities: list[Any]) -> np.ndarray:
        return np.stack([e.state.p_pos for e in entities])


class CooperativeNavigation(_MPETask):
    """Cooperative Navigation (``simple_spread``) with the paper's shared reward."""

    def __init__(self, n_agents: int = 3, episode_limit: int = 25) -> None:
        from mpe2 import simple_spread_v3

        raw = simple_spread_v3.raw_env(N=n_agents, max_cycles=episode_limit)
        super().__init__(raw, list(raw.world.agents), episode_limit)
        sizes = np.array([a.size for a in raw.world.agents])
        self._contact = sizes[:, None] + sizes[None, :]
        self._pairs = np.triu_indices(n_agents, k=1)

    def reward(self) -> float:
        """``-Σ_l min_a ‖p_a - p_l‖ - #{colliding agent pairs}`` (paper §8)."""
        agents = self._positions(self._world.agents)
        landmarks = self._positions(self._world.landmarks)
        to_landmarks = np.linalg.norm(agents[:, None] - landmarks[None], axis=-1)
        between = np.linalg.norm(agents[:, None] - agents[None], axis=-1)
        collisions = np.count_nonzero((between < self._contact)[self._pairs])
        return float(-to_landmarks.min(axis=0).sum() - collisions)

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        self._advance(actions)
        return self._observe(), self.reward(), False, self._t >= self.episode_limit, {}


class PredatorPrey(_MPETask):
    """Predator-Prey (``simple_tag``): learned predators chase a random, faster prey."""

    def __init__(self, episode_limit: int = 200, capture_bonus: float = 10.0,
                 n_predators: int = 3, n_obstacles: int = 2) -> None:
        from mpe2 import simple_tag_v3

        raw = simple_tag_v3.raw_env(num_good=1, num_adversaries=n_predators,
                                    num_obstacles=n_obstacles, max_cycles=episode_limit)
        predators = [a for a in raw.world.agents if a.adversary]
        self._prey = next(a for a in raw.world.agents if not a.adversary)
        super().__init__(raw, predators, episode_limit)
        self.capture_bonus = capture_bonus
        self._catch_radius = np.array([p.size + self._prey.size for p in predators])

    def prey_action(self) -> int:
        """The prey's move: uniform over its 5 actions, from the env's seeded RNG."""
        return int(self._env.np_random.integers(self.n_actions))

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        self._act(self._prey, self.prey_action())
        self._advance(actions)
        gaps = np.linalg.norm(self._positions(self._learners) - self._prey.state.p_pos, axis=-1)
        captured = bool((gaps < self._catch_radius).any())
        reward = -float(gaps.min()) + (self.capture_bonus if captured else 0.0)
        truncated = not captured and self._t >= self.episode_limit
        return self._observe(), reward, captured, truncated, {"captured": captured}


def make_env(cfg: EnvConfig) -> MultiAgentEnv:
    """Build the mpe2 task named by ``cfg.scenario``."""
    limit = cfg.episode_limit
    if cfg.scenario == "spread":
        return CooperativeNavigation(n_agents=cfg.n_agents or 3, episode_limit=limit or 25, **cfg.args)
    if cfg.scenario == "predator_prey":
        if cfg.n_agents not in (None, 3):
            kw = {"n_predators": cfg.n_agents}
        else:
            kw = {}
        return PredatorPrey(episode_limit=limit or 200, **kw, **cfg.args)
    raise ValueError(f"Unknown mpe scenario {cfg.scenario!r}: choose 'spread' or 'predator_prey' "
                     "(env=spread, env=spread5, env=predator_prey).")
