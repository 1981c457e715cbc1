"""Collects whole episodes from a :class:`~lica.envs.base.VecEnv` with the current policy.

One call = one episode per environment, all started together (finished environments
wait for the others).  Results are written in place into preallocated numpy buffers of
``episode_limit + 1`` rows and handed out as torch tensors trimmed to the longest
episode.  Training actions are sampled from the masked softmax with the collector's own
``torch.Generator``; test actions are greedy (docs/algorithm.md §6).

All environments step in lock-step: every step, one batched policy forward for all
environments and agents, then one ``env.step``.  For the jax backend,
:func:`lica.rollout.make_collector` returns the fused
:class:`~lica.rollout.jax_collector.JaxCollector` instead: the same loop as one jitted
program.
"""

from __future__ import annotations

import numpy as np
import torch

from lica.envs.base import VecEnv
from lica.models.agents import MultiAgentPolicy, masked_logits
from lica.rollout.batch import EpisodeBatch, EpisodeStats


class Collector:
    """Runs one episode per environment of ``env`` with a policy (see the module doc).

    Kept free of avoidable per-step work, because every microsecond the policy side
    spends is a microsecond the environments wait:

    * buffers are time-major (``limit + 1`` rows of ``num_envs``), so each step's
      observations, state, availability and actions are written with one contiguous
      copy (finished envs included); cells of envs that were not recording are zeroed
      once, at the end, from the ``filled`` mask;
    * rewards and flags are stored every step and masked at the end, so returns and
      lengths come out of the buffers instead of per-step bookkeeping;
    * the action mask is applied only when some action is unavailable (MPE: never);
    * sampling draws exactly what ``torch.multinomial(probs, 1)`` draws (its own
      algorithm: ``argmax(probs / q)``, ``q ~ Exp(1)`` from the same generator) without
      its per-call validity checks, which the softmax output passes by construction --
      the same seed gives the same actions, bit for bit;
    * the policy runs with one torch thread (see :meth:`collect`).
    """

    def __init__(self, env: VecEnv) -> None:
        self.env = env
        info = env.info
        n, limit = env.num_envs, info.episode_limit
        a, k = info.n_agents, info.n_actions
        self._buf = {  # time-major; handed out batch-major
            "obs": np.zeros((limit + 1, n, a, info.obs_dim), np.float32),
            "state": np.zeros((limit + 1, n, info.state_dim), np.float32),
            "avail": np.zeros((limit + 1, n, a, k), np.bool_),
            "actions": np.zeros((limit + 1, n, a), np.int64),
            "filled": np.zeros((limit + 1, n), np.bool_),
            "reward": np.zeros((limit, n), np.float32),
            "terminated": np.zeros((limit, n), np.bool_),
            "truncated": np.zeros((limit, n), np.bool_),
        }
        self._eye = torch.eye(k)

    def collect(self, policy: MultiAgentPolicy, seeds: np.ndarray, greedy: bool = False,
                generator: torch.Generator | None = None) -> EpisodeBatch:
        """Run one episode in every env (env ``i`` reset with ``seeds[i]``); the batch
        carries the episodes' statistics (``batch.stats``).

        The policy runs with one torch thread whatever the learner uses
        (``trainer.torch_threads``): its matrices are tiny, and extra intra-op threads
        only spin on the cores the env workers need."""
        threads = torch.get_num_threads()
        if threads != 1:
            torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                t_end, won = self._run(policy, seeds, greedy, generator)
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
        returns, lengths = self._finish_transitions(t_end)
        batch = self._batch(t_end)
        batch.stats = EpisodeStats(returns, lengths, won)
        return batch

    # -- the loop --------------------------------------------------------------------------
    def _act(self, policy: MultiAgentPolicy, obs: np.ndarray, avail: np.ndarray, last_onehot: torch.Tensor,
             hidden: torch.Tensor, greedy: bool, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions ``(k, n_agents)`` for ``k`` envs and their new hidden state; ``noise``
        holds the ``Exp(1)`` draws of these rows (``None`` when greedy)."""
        logits, hidden = policy(torch.from_numpy(obs), last_onehot, hidden)
        if not avail.all():
            logits = masked_logits(logits, torch.from_numpy(avail))
        if greedy:
            return logits.argmax(-1), hidden
        # == torch.multinomial(probs, 1, generator=generator), see the class doc
        probs = torch.softmax(logits, -1).view(-1, logits.shape[-1])
        return probs.div_(noise).argmax(-1).view(logits.shape[:-1]), hidden

    def _noise(self, generator: torch.Generator | None) -> torch.Tensor:
        """One step's ``Exp(1)`` draws for every env and agent (what multinomial draws)."""
        info = self.env.info
        return torch.empty(self.env.num_envs * info.n_agents, info.n_actions).exponential_(1, generator=generator)

    def _onehot(self, actions: torch.Tensor) -> torch.Tensor:
        return self._eye.index_select(0, actions.reshape(-1)).view(*actions.shape, -1)

    def _run(self, policy: MultiAgentPolicy, seeds: np.ndarray, greedy: bool,
             generator: torch.Generator | None) -> tuple[int, np.ndarray]:
        """All envs step together; returns the last step index ``t_end`` and who won."""
        b, env, info = self._buf, self.env, self.env.info
        b_obs, b_state, b_avail, b_actions, b_filled = b["obs"], b["state"], b["avail"], b["actions"], b["filled"]
        b_reward, b_terminated, b_truncated = b["reward"], b["terminated"], b["truncated"]
        n, limit = env.num_envs, info.episode_limit
        won = np.zeros(n, np.bool_)
        running = np.ones(n, np.bool_)
        recording = running.copy()  # rows whose state at t is stored (running + just finished)
        ob = env.reset(seeds)
        obs, state, avail = ob.obs, ob.state, ob.avail
        hidden = policy.initial_state(n)
        last_onehot = torch.zeros(n, info.n_agents, info.n_actions)
        t = 0
        while True:
            b_obs[t], b_state[t], b_avail[t], b_filled[t] = obs, state, avail, recording
            actions, hidden = self._act(policy, obs, avail, last_onehot, hidden, greedy,
                                        None if greedy else self._noise(generator))
            actions_np = actions.numpy()
            b_actions[t] = actions_np
            if t == limit or not running.any():
                break
            res = env.step(actions_np, running)
            b_reward[t], b_terminated[t], b_truncated[t] = res.reward, res.terminated, res.truncated
            done = running & (res.terminated | res.truncated)
            np.copyto(won, res.won, where=done)
            recording[:] = running
            running &= ~done
            obs, state, avail = res.obs, res.state, res.avail
            last_onehot = self._onehot(actions)
            t += 1
        if running.any():  # the env did not end its episode at episode_limit: cut it here
            b_truncated[t - 1, running] = True
        return t, won

    # -- the batch -------------------------------------------------------------------------
    def _finish_transitions(self, t_end: int) -> tuple[np.ndarray, np.ndarray]:
        """Masks the transitions of envs that were no longer running (their rows hold
        whatever the env returned) and sums returns and lengths."""
        b = self._buf
        live = b["filled"][1 : t_end + 1]  # env i was running during transition t
        if not live.all():
            dead = ~live
            b["reward"][:t_end][dead] = 0.0
            b["terminated"][:t_end][dead] = False
            b["truncated"][:t_end][dead] = False
        returns = np.zeros(self.env.num_envs, np.float64)
        for row in b["reward"][:t_end]:  # in time order, like an accumulating loop
            returns += row
        return returns, live.sum(0, dtype=np.int64)

    def _batch(self, t_end: int) -> EpisodeBatch:
        """The first ``t_end`` transitions (the longest episode's length) as a
        batch-major, zero-padded EpisodeBatch."""
        b, n_actions, t_max = self._buf, self.env.info.n_actions, t_end
        filled = b["filled"][: t_max + 1]
        if not filled.all():  # padding is zeros everywhere (EpisodeBatch doc)
            empty = ~filled
            for key in ("obs", "state", "avail", "actions"):
                b[key][: t_max + 1][empty] = 0

        def batch_major(key: str, rows: int) -> torch.Tensor:
            return torch.from_numpy(b[key][:rows]).transpose(0, 1).clone(memory_format=torch.contiguous_format)

        cut = {key: batch_major(key, t_max + 1) for key in ("obs", "state", "avail", "actions", "filled")}
        cut.update({key: batch_major(key, t_max) for key in ("reward", "terminated", "truncated")})
        return EpisodeBatch(
            **cut,
            actions_onehot=torch.nn.functional.one_hot(cut["actions"], n_actions).float()
            * cut["filled"][..., None, None],
        )

