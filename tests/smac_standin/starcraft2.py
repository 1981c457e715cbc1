"""The stand-in ``StarCraft2Env`` (see the package docstring: a toy, NOT StarCraft II,
because StarCraft II cannot run on these machines)."""

from __future__ import annotations

import math

import numpy as np

# Map parameters as in SMAC's smac/env/starcraft2/maps/smac_maps.py (team sizes, step
# limits, races, unit-type bits), for the paper's maps plus two small marine maps.
MAP_PARAMS: dict[str, dict] = {
    "3m": dict(n_agents=3, n_enemies=3, limit=60, a_race="T", b_race="T",
               unit_type_bits=0, map_type="marines"),
    "8m": dict(n_agents=8, n_enemies=8, limit=120, a_race="T", b_race="T",
               unit_type_bits=0, map_type="marines"),
    "2s3z": dict(n_agents=5, n_enemies=5, limit=120, a_race="P", b_race="P",
                 unit_type_bits=2, map_type="stalkers_and_zealots"),
    "1c3s5z": dict(n_agents=9, n_enemies=9, limit=180, a_race="P", b_race="P",
                   unit_type_bits=3, map_type="colossi_stalkers_zealots"),
    "5m_vs_6m": dict(n_agents=5, n_enemies=6, limit=70, a_race="T", b_race="T",
                     unit_type_bits=0, map_type="marines"),
    "2c_vs_64zg": dict(n_agents=2, n_enemies=64, limit=400, a_race="P", b_race="Z",
                       unit_type_bits=0, map_type="colossus"),
    "MMM2": dict(n_agents=10, n_enemies=12, limit=180, a_race="T", b_race="T",
                 unit_type_bits=3, map_type="MMM"),
    "3s5z_vs_3s6z": dict(n_agents=8, n_enemies=9, limit=170, a_race="P", b_race="P",
                         unit_type_bits=2, map_type="stalkers_and_zealots"),
}


def get_map_params(map_name: str) -> dict:
    """Like ``smac.env.starcraft2.maps.get_map_params``: ``KeyError`` for an unknown map."""
    return MAP_PARAMS[map_name]


_DIFFICULTY_DAMAGE = {str(i): 0.5 + 0.5 * i for i in range(1, 10)} | {"A": 6.0}
_MAP_SIZE = 32.0
_N_ACTIONS_NO_ATTACK = 6  # no-op, stop, north, south, east, west
_N_ACTIONS_MOVE = 4


class StarCraft2Env:
    """Stand-in with SMAC's ``StarCraft2Env`` interface (toy combat; see the package doc)."""

    def __init__(
        self,
        map_name="8m",
        step_mul=None,
        move_amount=2,
        difficulty="7",
        game_version=None,
        seed=None,
        continuing_episode=False,
        obs_all_health=True,
        obs_own_health=True,
        obs_last_action=False,
        obs_pathing_grid=False,
        obs_terrain_height=False,
        obs_instead_of_state=False,
        obs_timestep_number=False,
        state_last_action=True,
        state_timestep_number=False,
        reward_sparse=False,
        reward_only_positive=True,
        reward_death_value=10,
        reward_win=200,
        reward_defeat=0,
        reward_negative_scale=0.5,
        reward_scale=True,
        reward_scale_rate=20,
        replay_dir="",
        replay_prefix="",
        window_size_x=1920,
        window_size_y=1200,
        heuristic_ai=False,
        heuristic_rest=False,
        debug=False,
    ):
        params = get_map_params(map_name)  # KeyError for an unknown map, as in SMAC
        if str(difficulty) not in _DIFFICULTY_DAMAGE:
            raise KeyError(difficulty)
        self.map_name = map_name
        self.n_agents = params["n_agents"]
        self.n_enemies = params["n_enemies"]
        self.episode_limit = params["limit"]
        self.unit_type_bits = params["unit_type_bits"]
        self.map_type = params["map_type"]
        self.shield_bits_ally = 1 if params["a_race"] == "P" else 0
        self.shield_bits_enemy = 1 if params["b_race"] == "P" else 0
        self._move_amount = move_amount
        self._step_mul = step_mul
        self.difficulty = str(difficulty)
        self.game_version = game_version
        self._seed = seed
        self.continuing_episode = continuing_episode
        self.obs_all_health = obs_all_health
        self.obs_own_health = obs_own_health or obs_all_health
        self.obs_last_action = obs_last_action
        self.obs_pathing_grid = obs_pathing_grid
        self.obs_terrain_height = obs_terrain_height
        self.obs_instead_of_state = obs_instead_of_state
        self.obs_timestep_number = obs_timestep_number
        self.state_last_action = state_last_action
        self.state_timestep_number = state_timestep_number
        self.reward_sparse = reward_sparse
        self.reward_only_positive = reward_only_positive
        self.reward_death_value = reward_death_value
        self.reward_win = reward_win
        self.reward_defeat = reward_defeat
        self.reward_negative_scale = reward_negative_scale
        self.reward_scale = reward_scale
        self.reward_scale_rate = reward_scale_rate
        self.heuristic_ai = heuristic_ai
        self.debug = debug
        self.n_obs_pathing = 8
        self.n_obs_height = 9
        self.n_actions = _N_ACTIONS_NO_ATTACK + self.n_enemies

        self._rng = np.random.default_rng(seed)
        self._ally_type = self._types(self.n_agents)
        self._enemy_type = self._types(self.n_enemies)
        self._ally_hp_max = 45.0 + 15.0 * self._ally_type
        self._enemy_hp_max = 45.0 + 15.0 * self._enemy_type
        self._ally_sh_max = np.full(self.n_agents, 30.0 * self.shield_bits_ally)
        self._enemy_sh_max = np.full(self.n_enemies, 30.0 * self.shield_bits_enemy)
        self.max_reward = (self.n_enemies * reward_death_value + reward_win
                           + float(self._enemy_hp_max.sum() + self._enemy_sh_max.sum()))

        self.launches = 0  # how often the "game" was launched (SMAC: SC2 processes)
        self.closed = False
        self._episode_count = 0
        self._episode_steps = 0
        self._total_steps = 0
        self._running = False
        self._started = False
        self.battles_won = 0
        self.battles_game = 0
        self.timeouts = 0
        self.force_restarts = 0
        self.last_action = np.zeros((self.n_agents, self.n_actions))

    # ------------------------------------------------------------------ episode
    def _types(self, n: int) -> np.ndarray:
        bits = max(self.unit_type_bits, 1)
        return (np.arange(n) * bits // n).astype(np.int64)

    def reset(self):
        """Start an episode; the first call "launches the game".  No seed argument (SMAC)."""
        if self.launches == 0 or self.closed:
            self.launches += 1
            self.closed = False
        self._episode_steps = 0
        mid = _MAP_SIZE / 2
        self._ally_pos = np.stack([
            mid - 3.0 + self._rng.uniform(-1, 1, self.n_agents),
            mid + np.linspace(-4, 4, self.n_agents) + self._rng.uniform(-0.5, 0.5, self.n_agents),
        ], axis=1)
        self._enemy_pos = np.stack([
            mid + 3.0 + self._rng.uniform(-1, 1, self.n_enemies),
            mid + np.linspace(-4, 4, self.n_enemies) + self._rng.uniform(-0.5, 0.5, self.n_enemies),
        ], axis=1)
        self._ally_hp = self._ally_hp_max.copy()
        self._enemy_hp = self._enemy_hp_max.copy()
        self._ally_sh = self._ally_sh_max.copy()
        self._enemy_sh = self._enemy_sh_max.copy()
        self.last_action = np.zeros((self.n_agents, self.n_actions))
        self._running = True
        self._started = True
        return self.get_obs(), self.get_state()

    def step(self, actions):
        """One step.  Returns ``(reward, terminated, info)`` as SMAC does."""
        if not self._running:
            raise RuntimeError("stand-in StarCraft2Env: step() outside an episode; call reset()")
        actions = [int(a) for a in actions]
        if len(actions) != self.n_agents:
            raise ValueError(f"expected {self.n_agents} actions, got {len(actions)}")
        for a_id, action in enumerate(actions):
            assert self.get_avail_agent_actions(a_id)[action] == 1, \
                f"Agent {a_id} cannot perform action {action}"
        self.last_action = np.eye(self.n_actions)[np.array(actions)]

        enemy_before = self._enemy_hp + self._enemy_sh
        ally_before = self._ally_hp + self._ally_sh
        enemy_alive_before = self._enemy_hp > 0
        ally_alive_before = self._ally_hp > 0

        # Allies act (simultaneously with the enemies below, which see positions before).
        ally_damage = np.zeros(self.n_enemies)
        for a_id, action in enumerate(actions):
            if action in (2, 3, 4, 5):
                self._ally_pos[a_id] += self._direction(action) * self._move_amount
            elif action >= _N_ACTIONS_NO_ATTACK:
                ally_damage[action - _N_ACTIONS_NO_ATTACK] += 9.0
        # Enemies: walk to the nearest live ally, shoot it when in range.
        enemy_damage = np.zeros(self.n_agents)
        if ally_alive_before.any():
            live = np.flatnonzero(ally_alive_before)
            for e_id in np.flatnonzero(enemy_alive_before):
                d = np.linalg.norm(self._ally_pos[live] - self._enemy_pos[e_id], axis=1)
                target = live[int(np.argmin(d))]
                if d.min() <= self.unit_shoot_range(0):
                    enemy_damage[target] += _DIFFICULTY_DAMAGE[self.difficulty]
                else:
                    step = (self._ally_pos[target] - self._enemy_pos[e_id]) / d.min()
                    self._enemy_pos[e_id] += step * self._move_amount / 2
        self._apply_damage(self._enemy_hp, self._enemy_sh, ally_damage)
        self._apply_damage(self._ally_hp, self._ally_sh, enemy_damage)

        self._total_steps += 1
        self._episode_steps += 1

        # Reward as SMAC's reward_battle.
        reward = 0.0
        if not self.reward_sparse:
            killed = enemy_alive_before & (self._enemy_hp <= 0)
            lost = ally_alive_before & (self._ally_hp <= 0)
            delta_enemy = float((enemy_before - self._enemy_hp - self._enemy_sh)[enemy_alive_before].sum())
            delta_ally = float((ally_before - self._ally_hp - self._ally_sh)[ally_alive_before].sum())
            delta_deaths = self.reward_death_value * float(killed.sum())
            if self.reward_only_positive:
                reward = abs(delta_enemy + delta_deaths)
            else:
                delta_deaths -= self.reward_death_value * self.reward_negative_scale * float(lost.sum())
                reward = delta_enemy + delta_deaths - self.reward_negative_scale * delta_ally

        n_ally, n_enemy = int((self._ally_hp > 0).sum()), int((self._enemy_hp > 0).sum())
        game_end = None
        if n_ally == 0 and n_enemy > 0:
            game_end = -1
        elif n_ally > 0 and n_enemy == 0:
            game_end = 1
        elif n_ally == 0 and n_enemy == 0:
            game_end = 0

        terminated = False
        info = {"battle_won": False}
        if game_end is not None:
            terminated = True
            self.battles_game += 1
            if game_end == 1:
                self.battles_won += 1
                info["battle_won"] = True
                reward = 1 if self.reward_sparse else reward + self.reward_win
            elif game_end == -1:
                reward = -1 if self.reward_sparse else reward + self.reward_defeat
        elif self._episode_steps >= self.episode_limit:
            terminated = True
            if self.continuing_episode:  # SMAC sets this key only when continuing
                info["episode_limit"] = True
            self.battles_game += 1
            self.timeouts += 1
        if terminated:
            self._episode_count += 1
            self._running = False
            info["dead_allies"] = self.n_agents - n_ally
            info["dead_enemies"] = self.n_enemies - n_enemy
        if self.reward_scale:
            reward /= self.max_reward / self.reward_scale_rate
        return reward, terminated, info

    @staticmethod
    def _direction(action: int) -> np.ndarray:
        return {2: np.array([0.0, 1.0]), 3: np.array([0.0, -1.0]),
                4: np.array([1.0, 0.0]), 5: np.array([-1.0, 0.0])}[action]

    @staticmethod
    def _apply_damage(hp: np.ndarray, sh: np.ndarray, damage: np.ndarray) -> None:
        to_shield = np.minimum(sh, damage)
        sh -= to_shield
        hp -= damage - to_shield
        np.maximum(hp, 0.0, out=hp)
        sh[hp <= 0] = 0.0

    # ------------------------------------------------------------- read-outs
    def _check_started(self) -> None:
        if not self._started:
            raise RuntimeError("stand-in StarCraft2Env: call reset() first (as with SMAC)")

    @staticmethod
    def unit_shoot_range(agent_id):
        return 6

    @staticmethod
    def unit_sight_range(agent_id):
        return 9

    def _can_move(self, a_id: int, action: int) -> bool:
        x, y = self._ally_pos[a_id] + self._direction(action) * self._move_amount / 2
        return 0 <= x < _MAP_SIZE and 0 <= y < _MAP_SIZE

    def get_avail_agent_actions(self, agent_id):
        self._check_started()
        if self._ally_hp[agent_id] <= 0:
            return [1] + [0] * (self.n_actions - 1)  # only no-op for the dead
        avail = [0] * self.n_actions
        avail[1] = 1
        for action in (2, 3, 4, 5):
            avail[action] = int(self._can_move(agent_id, action))
        d = np.linalg.norm(self._enemy_pos - self._ally_pos[agent_id], axis=1)
        for e_id in np.flatnonzero((self._enemy_hp > 0) & (d <= self.unit_shoot_range(agent_id))):
            avail[_N_ACTIONS_NO_ATTACK + int(e_id)] = 1
        return avail

    def get_avail_actions(self):
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def get_obs_agent(self, agent_id):
        self._check_started()
        nf_al = 4 + self.unit_type_bits
        nf_en = 4 + self.unit_type_bits
        if self.obs_all_health:
            nf_al += 1 + self.shield_bits_ally
            nf_en += 1 + self.shield_bits_enemy
        if self.obs_last_action:
            nf_al += self.n_actions
        move_len = _N_ACTIONS_MOVE + self.n_obs_pathing * self.obs_pathing_grid \
            + self.n_obs_height * self.obs_terrain_height
        own_len = self.unit_type_bits + (1 + self.shield_bits_ally) * self.obs_own_health \
            + int(self.obs_timestep_number)
        move = np.zeros(move_len, dtype=np.float32)
        enemy = np.zeros((self.n_enemies, nf_en), dtype=np.float32)
        ally = np.zeros((self.n_agents - 1, nf_al), dtype=np.float32)
        own = np.zeros(own_len, dtype=np.float32)
        if self._ally_hp[agent_id] > 0:
            sight = self.unit_sight_range(agent_id)
            avail = self.get_avail_agent_actions(agent_id)
            move[:_N_ACTIONS_MOVE] = avail[2:6]
            if self.obs_pathing_grid:
                move[_N_ACTIONS_MOVE:_N_ACTIONS_MOVE + self.n_obs_pathing] = 1.0
            x, y = self._ally_pos[agent_id]
            for e_id in range(self.n_enemies):
                ex, ey = self._enemy_pos[e_id]
                dist = math.hypot(ex - x, ey - y)
                if dist < sight and self._enemy_hp[e_id] > 0:
                    enemy[e_id, :4] = (avail[_N_ACTIONS_NO_ATTACK + e_id], dist / sight,
                                       (ex - x) / sight, (ey - y) / sight)
                    ind = 4
                    if self.obs_all_health:
                        enemy[e_id, ind] = self._enemy_hp[e_id] / self._enemy_hp_max[e_id]
                        ind += 1
                        if self.shield_bits_enemy:
                            enemy[e_id, ind] = self._enemy_sh[e_id] / self._enemy_sh_max[e_id]
                            ind += 1
                    if self.unit_type_bits:
                        enemy[e_id, ind + self._enemy_type[e_id]] = 1.0
            for i, al_id in enumerate(j for j in range(self.n_agents) if j != agent_id):
                ax, ay = self._ally_pos[al_id]
                dist = math.hypot(ax - x, ay - y)
                if dist < sight and self._ally_hp[al_id] > 0:
                    ally[i, :4] = (1.0, dist / sight, (ax - x) / sight, (ay - y) / sight)
                    ind = 4
                    if self.obs_all_health:
                        ally[i, ind] = self._ally_hp[al_id] / self._ally_hp_max[al_id]
                        ind += 1
                        if self.shield_bits_ally:
                            ally[i, ind] = self._ally_sh[al_id] / self._ally_sh_max[al_id]
                            ind += 1
                    if self.unit_type_bits:
                        ally[i, ind + self._ally_type[al_id]] = 1.0
                        ind += self.unit_type_bits
                    if self.obs_last_action:
                        ally[i, ind:] = self.last_action[al_id]
            ind = 0
            if self.obs_own_health:
                own[ind] = self._ally_hp[agent_id] / self._ally_hp_max[agent_id]
                ind += 1
                if self.shield_bits_ally:
                    own[ind] = self._ally_sh[agent_id] / self._ally_sh_max[agent_id]
                    ind += 1
            if self.unit_type_bits:
                own[ind + self._ally_type[agent_id]] = 1.0
            if self.obs_timestep_number:
                own[-1] = self._episode_steps / self.episode_limit
        return np.concatenate([move, enemy.ravel(), ally.ravel(), own])

    def get_obs(self):
        return [self.get_obs_agent(i) for i in range(self.n_agents)]

    def get_state(self):
        self._check_started()
        if self.obs_instead_of_state:
            return np.concatenate(self.get_obs()).astype(np.float32)
        nf_al = 4 + self.shield_bits_ally + self.unit_type_bits
        nf_en = 3 + self.shield_bits_enemy + self.unit_type_bits
        ally = np.zeros((self.n_agents, nf_al))
        enemy = np.zeros((self.n_enemies, nf_en))
        mid = _MAP_SIZE / 2
        for i in np.flatnonzero(self._ally_hp > 0):
            ally[i, :4] = (self._ally_hp[i] / self._ally_hp_max[i], 0.0,
                           (self._ally_pos[i, 0] - mid) / _MAP_SIZE,
                           (self._ally_pos[i, 1] - mid) / _MAP_SIZE)
            ind = 4
            if self.shield_bits_ally:
                ally[i, ind] = self._ally_sh[i] / self._ally_sh_max[i]
                ind += 1
            if self.unit_type_bits:
                ally[i, ind + self._ally_type[i]] = 1.0
        for e in np.flatnonzero(self._enemy_hp > 0):
            enemy[e, :3] = (self._enemy_hp[e] / self._enemy_hp_max[e],
                            (self._enemy_pos[e, 0] - mid) / _MAP_SIZE,
                            (self._enemy_pos[e, 1] - mid) / _MAP_SIZE)
            ind = 3
            if self.shield_bits_enemy:
                enemy[e, ind] = self._enemy_sh[e] / self._enemy_sh_max[e]
                ind += 1
            if self.unit_type_bits:
                enemy[e, ind + self._enemy_type[e]] = 1.0
        parts = [ally.ravel(), enemy.ravel()]
        if self.state_last_action:
            parts.append(self.last_action.ravel())
        if self.state_timestep_number:
            parts.append(np.array([self._episode_steps / self.episode_limit]))
        return np.concatenate(parts).astype(np.float32)

    # ----------------------------------------------------------------- sizes
    def get_obs_size(self):
        nf_al = 4 + self.unit_type_bits
        nf_en = 4 + self.unit_type_bits
        if self.obs_all_health:
            nf_al += 1 + self.shield_bits_ally
            nf_en += 1 + self.shield_bits_enemy
        if self.obs_last_action:
            nf_al += self.n_actions
        own = self.unit_type_bits + (1 + self.shield_bits_ally) * self.obs_own_health \
            + int(self.obs_timestep_number)
        move = _N_ACTIONS_MOVE + self.n_obs_pathing * self.obs_pathing_grid \
            + self.n_obs_height * self.obs_terrain_height
        return move + self.n_enemies * nf_en + (self.n_agents - 1) * nf_al + own

    def get_state_size(self):
        if self.obs_instead_of_state:
            return self.get_obs_size() * self.n_agents
        nf_al = 4 + self.shield_bits_ally + self.unit_type_bits
        nf_en = 3 + self.shield_bits_enemy + self.unit_type_bits
        size = self.n_agents * nf_al + self.n_enemies * nf_en
        if self.state_last_action:
            size += self.n_agents * self.n_actions
        return size + int(self.state_timestep_number)

    def get_total_actions(self):
        return self.n_actions

    def get_env_info(self):
        return {"state_shape": self.get_state_size(), "obs_shape": self.get_obs_size(),
                "n_actions": self.get_total_actions(), "n_agents": self.n_agents,
                "episode_limit": self.episode_limit}

    # ----------------------------------------------------------------- other
    def get_stats(self):
        return {"battles_won": self.battles_won, "battles_game": self.battles_game,
                "battles_draw": self.timeouts,
                "win_rate": self.battles_won / max(self.battles_game, 1),
                "timeouts": self.timeouts, "restarts": self.force_restarts}

    def seed(self):
        return self._seed

    def close(self):
        self.closed = True
        self._running = False

    def render(self):
        pass

    def save_replay(self):
        pass
