"""The paper's MPE tasks on mpe2 (PettingZoo's Multi-Particle Environments, now ``mpe2``).

Both tasks use mpe2's own scenarios and physics (``World.step``).  They skip the
PettingZoo AEC/parallel wrappers (docs/performance.md) and drive the raw environment
directly: set every agent's action, one ``world.step()``, then read
observations with the scenario's ``observation``.  Rewards are the paper's shared team
rewards (docs/algorithm.md §8), computed here from positions, not mpe2's per-agent rewards.

* :class:`CooperativeNavigation` (``scenario: spread``, ``simple_spread``): n agents, n
  landmarks, actions [no-op, left, right, down, up];
  ``r_t = -Σ_landmarks min_agents ‖p_agent - p_landmark‖ - (number of colliding agent pairs)``.
* :class:`PredatorPrey` (``scenario: predator_prey``, ``simple_tag``): 3 learned
  predators, 1 faster prey that acts uniformly at random (not learned), 2 obstacles;
  ``r_t = -min_predators ‖p_predator - p_prey‖`` and, on capture (a predator touches
  the prey), ``+capture_bonus`` and the episode terminates.

Observations are mpe2's; the global state is the concatenation of all agents'
observations (what mpe2's ``state()`` returns).  Every action is always available.

Observations are not built agent by agent with the scenario's ``observation`` but
gathered, with one precomputed index, from one vector of every agent's velocity,
position, communication and relative positions -- the same float64 numbers
(``p_other - p_self``) copied in the same order, so the result is identical.  The index mirrors the scenarios' observation layout and is
checked against ``scenario.observation`` on a probe state when the env is built (a
mismatch falls back to the scenario's own function).  Discrete actions come from a
table of mpe2's own ``_set_action`` results, and the team rewards reuse the gathered
positions.
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
            raise ValueError(f"episode_limit must be >= 1 (env.episode_limit), got {episode_limit}.")
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
        self._agents = list(self._world.agents)
        self._landmarks = list(self._world.landmarks)
        self._actions = {id(a): self._action_table(a) for a in self._agents}
        self._state_index, self._obs_index = self._gather_index()

    def get_env_info(self) -> EnvInfo:
        return self._info

    def render_frame(self) -> dict[str, np.ndarray]:
        """What a picture of the current state needs (:mod:`lica.render`): every entity's
        position, radius and mpe2 colour, and which entities are the learned agents."""
        entities = self._world.entities
        learners = {id(a) for a in self._learners}
        return {"pos": np.array([e.state.p_pos for e in entities]), "size": np.array([e.size for e in entities]),
                "color": np.array([e.color for e in entities]),
                "learner": np.array([id(e) in learners for e in entities])}

    # -- observations ------------------------------------------------------------------
    def _observation_parts(self, i: int, at: _SourceIndex) -> list[np.ndarray]:
        """Agent ``i``'s observation as index arrays into the source vector, in the
        order of the scenario's ``observation`` (subclasses mirror their scenario)."""
        raise NotImplementedError

    def _source(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every agent's position ``P`` and every landmark's ``L`` (float64), and the
        flat vector the observations are gathered from (see :class:`_SourceIndex`)."""
        agents = self._agents
        P = np.array([a.state.p_pos for a in agents])
        V = np.array([a.state.p_vel for a in agents])
        C = np.array([a.state.c for a in agents]).reshape(len(agents), -1)
        L = np.array([lm.state.p_pos for lm in self._landmarks]).reshape(-1, P.shape[1])
        src = np.concatenate([V.ravel(), P.ravel(), (L[None] - P[:, None]).ravel(),
                              (P[None] - P[:, None]).ravel(), C.ravel()])
        return P, L, src

    def _gather_index(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The state's and the learners' observations' positions in the source vector,
        or ``(None, None)`` when they do not reproduce ``scenario.observation`` on a
        probe state (then observations are built agent by agent)."""
        try:
            at = _SourceIndex(len(self._agents), len(self._landmarks), self._world.dim_p,
                              int(np.size(self._agents[0].state.c)))
            parts = [np.concatenate(self._observation_parts(i, at)) for i in range(len(self._agents))]
            state_index = np.concatenate(parts)
            obs_index = np.stack([parts[i] for i in self._learner_rows])
        except (NotImplementedError, ValueError, AttributeError):  # pragma: no cover - other layouts
            return None, None
        saved = [(e.state.p_pos, e.state.p_vel, getattr(e.state, "c", None)) for e in self._world.entities]
        try:
            rng = np.random.default_rng(12345)
            for e in self._world.entities:
                e.state.p_pos = rng.normal(size=self._world.dim_p)
                e.state.p_vel = rng.normal(size=self._world.dim_p)
                if getattr(e.state, "c", None) is not None:
                    e.state.c = rng.normal(size=np.shape(e.state.c))
            _, _, src = self._source()
            expected = [self._scenario.observation(a, self._world) for a in self._agents]
            ok = len(state_index) == sum(len(x) for x in expected) and np.array_equal(
                src[state_index], np.concatenate(expected))
        except (IndexError, ValueError):  # pragma: no cover - other layouts
            ok = False
        finally:
            for e, (pos, vel, c) in zip(self._world.entities, saved):
                e.state.p_pos, e.state.p_vel = pos, vel
                if c is not None:
                    e.state.c = c
        return (state_index, obs_index) if ok else (None, None)

    def _observe(self, src: np.ndarray | None = None) -> Observation:
        """Each agent's observation once; the state is their concatenation (mpe2's ``state()``)."""
        if self._state_index is None:
            per_agent = [self._scenario.observation(a, self._world) for a in self._world.agents]
            obs = np.stack([per_agent[i] for i in self._learner_rows]).astype(np.float32)
            return Observation(obs, np.concatenate(per_agent).astype(np.float32), self._avail)
        if src is None:
            src = self._source()[2]
        return Observation(src[self._obs_index].astype(np.float32), src[self._state_index].astype(np.float32),
                           self._avail)

    # -- actions -----------------------------------------------------------------------
    def _action_table(self, agent: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """mpe2's ``_set_action`` result (``action.u``, ``action.c``) for each discrete action."""
        table = []
        for action in range(self.n_actions):
            self._env._set_action([action], agent, self._env.action_spaces[agent.name])
            table.append((agent.action.u.copy(), agent.action.c.copy()))
        return table

    def _act(self, agent: Any, action: int) -> None:
        u, c = self._actions[id(agent)][int(action)]
        agent.action.u, agent.action.c = u.copy(), c.copy()

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


class _SourceIndex:
    """Offsets into the flat source vector of :meth:`_MPETask._source`:
    ``[V (n, p), P (n, p), L - P_i (n, m, p), P - P_i (n, n, p), C (n, c)]``."""

    def __init__(self, n: int, m: int, p: int, c: int) -> None:
        self.n, self.m, self.p, self.c = n, m, p, c
        self._rel_l = 2 * n * p
        self._rel_a = self._rel_l + n * m * p
        self._comm = self._rel_a + n * n * p

    def _span(self, start: int, width: int) -> np.ndarray:
        return np.arange(start, start + width)

    def vel(self, i: int) -> np.ndarray:
        return self._span(i * self.p, self.p)

    def pos(self, i: int) -> np.ndarray:
        return self._span((self.n + i) * self.p, self.p)

    def landmark_from(self, i: int, j: int) -> np.ndarray:
        """``p_landmark_j - p_agent_i``."""
        return self._span(self._rel_l + (i * self.m + j) * self.p, self.p)

    def agent_from(self, i: int, k: int) -> np.ndarray:
        """``p_agent_k - p_agent_i``."""
        return self._span(self._rel_a + (i * self.n + k) * self.p, self.p)

    def comm(self, k: int) -> np.ndarray:
        return self._span(self._comm + k * self.c, self.c)


class CooperativeNavigation(_MPETask):
    """Cooperative Navigation (``simple_spread``) with the paper's shared reward."""

    def __init__(self, n_agents: int = 3, episode_limit: int = 25) -> None:
        from mpe2 import simple_spread_v3

        if n_agents < 1:
            raise ValueError(f"Cooperative Navigation needs n_agents >= 1 (env.n_agents), got {n_agents}.")

        raw = simple_spread_v3.raw_env(N=n_agents, max_cycles=episode_limit)
        super().__init__(raw, list(raw.world.agents), episode_limit)
        sizes = np.array([a.size for a in raw.world.agents])
        self._contact = sizes[:, None] + sizes[None, :]
        self._pairs = np.triu_indices(n_agents, k=1)

    def _observation_parts(self, i: int, at: _SourceIndex) -> list[np.ndarray]:
        # simple_spread.Scenario.observation: vel, pos, landmarks - pos, others - pos, others' comm
        sc = self._scenario
        if sc.num_landmark_neighbors is not None or sc.num_agent_neighbors is not None:
            raise NotImplementedError  # partial observability: use the scenario's own function
        others = [k for k in range(at.n) if k != i]
        return ([at.vel(i), at.pos(i)] + [at.landmark_from(i, j) for j in range(at.m)]
                + [at.agent_from(i, k) for k in others] + [at.comm(k) for k in others])

    def reward(self) -> float:
        """``-Σ_l min_a ‖p_a - p_l‖ - #{colliding agent pairs}`` (paper §8)."""
        return self._reward(self._positions(self._world.agents), self._positions(self._world.landmarks))

    def _reward(self, agents: np.ndarray, landmarks: np.ndarray) -> float:
        to_landmarks = _norm(agents[:, None] - landmarks[None])
        i, j = self._pairs
        collisions = np.count_nonzero(_norm(agents[i] - agents[j]) < self._contact[i, j])
        return float(-to_landmarks.min(axis=0).sum() - collisions)

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        self._advance(actions)
        if self._state_index is None:
            return self._observe(), self.reward(), False, self._t >= self.episode_limit, {}
        P, L, src = self._source()
        return self._observe(src), self._reward(P, L), False, self._t >= self.episode_limit, {}


class PredatorPrey(_MPETask):
    """Predator-Prey (``simple_tag``): learned predators chase a random, faster prey."""

    def __init__(self, episode_limit: int = 200, capture_bonus: float = 10.0,
                 n_predators: int = 3, n_obstacles: int = 2) -> None:
        from mpe2 import simple_tag_v3

        if n_predators < 1:
            raise ValueError(f"Predator-Prey needs n_predators >= 1 (env.n_agents), got {n_predators}.")

        raw = simple_tag_v3.raw_env(num_good=1, num_adversaries=n_predators,
                                    num_obstacles=n_obstacles, max_cycles=episode_limit)
        predators = [a for a in raw.world.agents if a.adversary]
        self._prey = next(a for a in raw.world.agents if not a.adversary)
        super().__init__(raw, predators, episode_limit)
        self.capture_bonus = capture_bonus
        self._catch_radius = np.array([p.size + self._prey.size for p in predators])
        self._prey_row = self._agents.index(self._prey)

    def prey_action(self) -> int:
        """The prey's move: uniform over its 5 actions, from the env's seeded RNG."""
        return int(self._env.np_random.integers(self.n_actions))

    def _observation_parts(self, i: int, at: _SourceIndex) -> list[np.ndarray]:
        # simple_tag.Scenario.observation: vel, pos, non-boundary landmarks - pos,
        # others - pos, velocities of the other non-adversary agents
        sc = self._scenario
        if sc.num_landmark_neighbors is not None or sc.num_agent_neighbors is not None:
            raise NotImplementedError  # partial observability: use the scenario's own function
        others = [k for k in range(at.n) if k != i]
        seen = [j for j, lm in enumerate(self._landmarks) if not lm.boundary]
        return ([at.vel(i), at.pos(i)] + [at.landmark_from(i, j) for j in seen]
                + [at.agent_from(i, k) for k in others]
                + [at.vel(k) for k in others if not self._agents[k].adversary])

    def step(self, actions: np.ndarray) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        self._act(self._prey, self.prey_action())
        self._advance(actions)
        if self._state_index is None:
            ob, positions = self._observe(), self._positions(self._agents)
        else:
            positions, _, src = self._source()
            ob = self._observe(src)
        gaps = _norm(positions[self._learner_rows] - positions[self._prey_row])
        captured = bool((gaps < self._catch_radius).any())
        reward = -float(gaps.min()) + (self.capture_bonus if captured else 0.0)
        truncated = not captured and self._t >= self.episode_limit
        return ob, reward, captured, truncated, {"captured": captured}


def _norm(d: np.ndarray) -> np.ndarray:
    """Euclidean norm over the last axis, computed exactly as ``np.linalg.norm(d, axis=-1)``
    computes it (``sqrt`` of the summed squares), without its argument handling."""
    return np.sqrt(np.add.reduce(d * d, axis=-1))


def make_env(cfg: EnvConfig) -> MultiAgentEnv:
    """Build the mpe2 task named by ``cfg.scenario``.  ``env.n_agents`` / ``env.episode_limit``
    null take the task's own default (3 agents; 25 steps for spread, 200 for predator_prey);
    any number is used as given (below 1 is an error)."""
    kw: dict[str, Any] = {} if cfg.episode_limit is None else {"episode_limit": cfg.episode_limit}
    if cfg.scenario == "spread":
        if cfg.n_agents is not None:
            kw["n_agents"] = cfg.n_agents
        return CooperativeNavigation(**kw, **cfg.args)
    if cfg.scenario == "predator_prey":
        if cfg.n_agents is not None:
            kw["n_predators"] = cfg.n_agents
        return PredatorPrey(**kw, **cfg.args)
    raise ValueError(f"Unknown mpe scenario {cfg.scenario!r}: choose 'spread' or 'predator_prey' "
                     "(env=spread, env=spread5, env=predator_prey).")
