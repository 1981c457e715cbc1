"""Collects whole episodes from a :class:`~lica.envs.base.VecEnv` with the current policy.

One call = one episode per environment, all started together and stepped in lock-step
(finished environments wait).  The policy runs once per step for all environments and
agents (one batched forward); results are written in place into preallocated numpy
buffers of ``episode_limit + 1`` rows and handed out as torch tensors trimmed to the
longest episode.  Training actions are sampled from the masked softmax with the
collector's own ``torch.Generator``; test actions are greedy (LICA_SPEC §6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lica.envs.base import VecEnv
from lica.models.agents import MultiAgentPolicy, masked_logits
from lica.rollout.batch import EpisodeBatch


@dataclass
class EpisodeStats:
    returns: np.ndarray  # (B,) undiscounted episode return
    lengths: np.ndarray  # (B,) transitions per episode
    won: np.ndarray  # (B,) bool

    def summary(self, prefix: str, reports_wins: bool) -> dict[str, float]:
        out = {f"{prefix}_return_mean": float(self.returns.mean()),
               f"{prefix}_ep_length_mean": float(self.lengths.mean())}
        if reports_wins:
            out[f"{prefix}_battle_won_mean"] = float(self.won.mean())
        return out


class Collector:
    def __init__(self, env: VecEnv) -> None:
        self.env = env
        info = env.info
        n, limit = env.num_envs, info.episode_limit
        a, k = info.n_agents, info.n_actions
        self._buf = {
            "obs": np.zeros((n, limit + 1, a, info.obs_dim), np.float32),
            "state": np.zeros((n, limit + 1, info.state_dim), np.float32),
            "avail": np.zeros((n, limit + 1, a, k), np.bool_),
            "actions": np.zeros((n, limit + 1, a), np.int64),
            "filled": np.zeros((n, limit + 1), np.bool_),
            "reward": np.zeros((n, limit), np.float32),
            "terminated": np.zeros((n, limit), np.bool_),
            "truncated": np.zeros((n, limit), np.bool_),
        }
        self._eye = torch.eye(k)

    @torch.inference_mode()
    def collect(self, policy: MultiAgentPolicy, seeds: np.ndarray, greedy: bool = False,
                generator: torch.Generator | None = None) -> tuple[EpisodeBatch, EpisodeStats]:
        """Run one episode in every env (env ``i`` reset with ``seeds[i]``)."""
        b, env, info = self._buf, self.env, self.env.info
        for v in b.values():
            v.fill(0)
        n = env.num_envs
        won = np.zeros(n, np.bool_)
        returns = np.zeros(n, np.float64)
        lengths = np.zeros(n, np.int64)
        running = np.ones(n, np.bool_)
        recording = running.copy()  # rows whose state at t is stored (running + just finished)
        ob = env.reset(seeds)
        obs, state, avail = ob.obs, ob.state, ob.avail
        hidden = policy.initial_state(n)
        last_onehot = torch.zeros(n, info.n_agents, info.n_actions)
        t = 0
        while True:
            rows = np.flatnonzero(recording)
            b["obs"][rows, t], b["state"][rows, t], b["avail"][rows, t] = obs[rows], state[rows], avail[rows]
            b["filled"][rows, t] = True
            logits, hidden = policy(torch.from_numpy(obs), last_onehot, hidden)
            logits = masked_logits(logits, torch.from_numpy(avail))
            if greedy:
                actions = logits.argmax(-1)
            else:
                probs = torch.softmax(logits, -1).view(-1, info.n_actions)
                actions = torch.multinomial(probs, 1, generator=generator).view(n, info.n_agents)
            actions_np = actions.numpy()
            b["actions"][rows, t] = actions_np[rows]
            if not running.any() or t == info.episode_limit:
                break
            res = env.step(actions_np, running)
            live = np.flatnonzero(running)
            b["reward"][live, t] = res.reward[live]
            b["terminated"][live, t] = res.terminated[live]
            b["truncated"][live, t] = res.truncated[live]
            returns[live] += res.reward[live]
            lengths[live] += 1
            done = running & (res.terminated | res.truncated)
            won[done] = res.won[done]
            recording = running.copy()
            running &= ~done
            obs, state, avail = res.obs, res.state, res.avail
            last_onehot = self._eye[actions]
            t += 1
        if running.any():  # the env did not end its episode at episode_limit: cut it here
            b["truncated"][running, t - 1] = True
        t_max = int(lengths.max())
        cut = {k: torch.from_numpy(v[:, : t_max + 1] if v.shape[1] == info.episode_limit + 1
                                   else v[:, :t_max]).clone() for k, v in b.items()}
        batch = EpisodeBatch(
            obs=cut["obs"], state=cut["state"], avail=cut["avail"], actions=cut["actions"],
            actions_onehot=torch.nn.functional.one_hot(cut["actions"], info.n_actions).float()
            * cut["filled"][..., None, None],
            filled=cut["filled"], reward=cut["reward"], terminated=cut["terminated"],
            truncated=cut["truncated"],
        )
        return batch, EpisodeStats(returns, lengths, won)
