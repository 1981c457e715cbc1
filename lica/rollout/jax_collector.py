"""The collector of the JAX backend: a whole batch of episodes as one jitted program.

For an env whose batched reset and step JAX can trace (``VecEnv.traceable``: the jax
backend) the collector runs *everything* of a batch -- reset, then the actor and one env
step for every env, until every episode has ended or ``episode_limit`` is reached --
inside one ``jax.jit``-compiled ``lax.while_loop``: one dispatch and one device->host
transfer per batch, nothing per step (why: docs/performance.md).

* The actor inside is :func:`policy_step`, a JAX transcription of
  :meth:`lica.models.agents.MultiAgentPolicy.forward` (docs/algorithm.md §2: obs ⊕ one-hot
  previous action ⊕ one-hot agent id; RNN or MLP, shared or per-agent weights) that
  reads the torch actor's parameters, copied at every collect (so exactly on-policy).
  Unavailable actions are masked as in :func:`lica.models.agents.masked_logits`.
* Training actions: Gumbel-max on the masked logits, ``argmax(logits + g)`` with
  ``g ~ Gumbel(0, 1)`` (what ``jax.random.categorical`` does; the same distribution as
  sampling the softmax, other draws than the torch collector's).  The noise of the
  whole batch is drawn in one call before the loop, from a key drawn from the
  collector's ``torch.Generator``, so a seed
  still fixes everything and a resumed run continues the same stream.  Test actions
  are greedy.
* The recorded buffers and the batch handed out follow :class:`Collector` exactly
  (same rows, masks and padding: checked against the step-wise collector in the tests).

The program is compiled on the first collect of each collector; greedy and sampled
actions share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import torch

from lica.envs.jax import JaxVecEnv, seeds_to_keys
from lica.models.agents import UNAVAILABLE_LOGIT, MultiAgentPolicy
from lica.rollout.collector import Collector


@dataclass(frozen=True)
class ActorSpec:
    """The static shape of a :class:`MultiAgentPolicy` (hashable: a jit static argument)."""

    n_agents: int
    n_actions: int
    recurrent: bool
    hidden_dim: int
    obs_last_action: bool
    obs_agent_id: bool

    @classmethod
    def of(cls, policy: MultiAgentPolicy) -> ActorSpec:
        c = policy.cfg
        return cls(policy.n_agents, policy.n_actions, policy.recurrent, c.hidden_dim,
                   c.obs_last_action, c.obs_agent_id)


def actor_params(policy: MultiAgentPolicy) -> dict[str, np.ndarray]:
    """The torch actor's parameters as numpy arrays (names of its ``state_dict``)."""
    return {k: v.detach().cpu().numpy() for k, v in policy.state_dict().items()}


def _agent_linear(p: dict[str, Any], name: str, x: jax.Array) -> jax.Array:
    """:class:`lica.models.agents.AgentLinear`: one weight for all agents or one each."""
    w, b = p[f"{name}.weight"], p[f"{name}.bias"]
    if w.shape[0] == 1:
        return x @ w[0] + b[0]
    return jnp.einsum("...ni,nio->...no", x, w) + b


def _gru_cell(p: dict[str, Any], x: jax.Array, h: jax.Array) -> jax.Array:
    """``torch.nn.GRUCell``: gates r, z, n in that order in ``weight_ih``/``weight_hh``."""
    i_r, i_z, i_n = jnp.split(x @ p["rnn.weight_ih"].T + p["rnn.bias_ih"], 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h @ p["rnn.weight_hh"].T + p["rnn.bias_hh"], 3, axis=-1)
    r = jax.nn.sigmoid(i_r + h_r)
    z = jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return (1.0 - z) * n + z * h


def policy_step(p: dict[str, Any], spec: ActorSpec, obs: jax.Array, last_onehot: jax.Array,
                hidden: jax.Array) -> tuple[jax.Array, jax.Array]:
    """:meth:`MultiAgentPolicy.forward` in JAX: ``obs (N, n, O)`` -> logits ``(N, n, A)``,
    new hidden ``(N, n, H)`` (width 0 for MLP agents)."""
    parts = [obs]
    if spec.obs_last_action:
        parts.append(last_onehot)
    if spec.obs_agent_id:
        parts.append(jnp.broadcast_to(jnp.eye(spec.n_agents, dtype=obs.dtype), obs.shape[:-1] + (spec.n_agents,)))
    x = jax.nn.relu(_agent_linear(p, "fc1", jnp.concatenate(parts, axis=-1)))
    if spec.recurrent:
        hidden = _gru_cell(p, x, hidden)
        x = hidden
    return _agent_linear(p, "fc2", x), hidden


def _masked(logits: jax.Array, avail: jax.Array) -> jax.Array:
    """:func:`lica.models.agents.masked_logits`: unavailable actions get -1e10; rows with
    no available action (padding) stay unmasked."""
    usable = jnp.where(avail.any(-1, keepdims=True), avail, True)
    return jnp.where(usable, logits, UNAVAILABLE_LOGIT)


class _Loop(NamedTuple):
    """The carry of the episode loop (a pytree)."""

    t: jax.Array  # the time step being recorded
    env_carry: Any  # JaxVecEnv's (env_state, keys, t)
    obs: jax.Array
    state: jax.Array
    avail: jax.Array
    hidden: jax.Array  # the actor's (N, n, H)
    last_onehot: jax.Array  # previous actions, one-hot (N, n, A)
    running: jax.Array  # (N,) episode not over yet
    recording: jax.Array  # (N,) row t is stored (running, or ended at t)
    won: jax.Array  # (N,)
    buf: dict[str, jax.Array]  # Collector's time-major buffers


class JaxCollector(Collector):
    """:class:`Collector` for a :class:`JaxVecEnv`, the whole batch in one program."""

    def __init__(self, env: JaxVecEnv) -> None:
        super().__init__(env)
        self._program = jax.jit(self._episodes, static_argnames="spec")

    # -- Collector hooks ---------------------------------------------------------------
    def _run(self, policy: MultiAgentPolicy, seeds: np.ndarray, greedy: bool,
             generator: torch.Generator | None) -> tuple[int, np.ndarray]:
        return self._execute(actor_params(policy), ActorSpec.of(policy), seeds, greedy, generator)

    def random_episodes(self, seeds: np.ndarray, generator: torch.Generator | None = None) -> int:
        """One episode per env with uniformly random available actions, in the same
        program without the actor (the env's own limit); returns the env steps."""
        t_end, _ = self._execute({}, None, seeds, False, generator)
        return int(self._buf["filled"][1 : t_end + 1].sum())

    # -- internals ---------------------------------------------------------------------
    def _execute(self, params: dict[str, np.ndarray], spec: ActorSpec | None, seeds: np.ndarray, greedy: bool,
                 generator: torch.Generator | None) -> tuple[int, np.ndarray]:
        reset_keys = self.env.reset_keys(seeds)
        # the sampling key: 62 bits from the collector's generator (fixed by the run's seed)
        key_seed = 0 if greedy else int(torch.randint(0, 2**62, (1,), generator=generator))
        out = self._program(params, reset_keys, seeds_to_keys(np.array([key_seed]))[0],
                            np.bool_(greedy), spec=spec)
        t_end, won, buf = jax.device_get(out)
        t_end = int(t_end)
        for name, rows in buf.items():
            np.copyto(self._buf[name][: t_end + 1], rows[: t_end + 1])
        return t_end, np.array(won)

    def _episodes(self, params: dict[str, Any], reset_keys: jax.Array, key: jax.Array, greedy: jax.Array,
                  spec: ActorSpec | None) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """The traced program: :meth:`Collector._run`'s loop, step for step.  ``spec=None``:
        no actor, uniformly random available actions."""
        env, info = self.env, self.env.info
        n, limit, n_act = env.num_envs, info.episode_limit, info.n_actions
        env_carry, (obs, state, avail) = env.reset_batch(reset_keys)
        gumbel = jax.random.gumbel(key, (limit + 1, n, info.n_agents, n_act), jnp.float32)

        def observe_and_act(ls: _Loop) -> tuple[jax.Array, _Loop]:
            """Record the state at ``t`` and choose every env's actions there."""
            t, buf = ls.t, ls.buf
            buf = dict(buf, obs=buf["obs"].at[t].set(ls.obs), state=buf["state"].at[t].set(ls.state),
                       avail=buf["avail"].at[t].set(ls.avail), filled=buf["filled"].at[t].set(ls.recording))
            hidden = ls.hidden
            if spec is None:
                logits = jnp.zeros(ls.avail.shape, jnp.float32)
            else:
                logits, hidden = policy_step(params, spec, ls.obs, ls.last_onehot, hidden)
            logits = _masked(logits, ls.avail)
            actions = jnp.argmax(jnp.where(greedy, logits, logits + gumbel[t]), -1).astype(jnp.int32)
            return actions, ls._replace(hidden=hidden, buf=dict(buf, actions=buf["actions"].at[t].set(actions)))

        def step(ls: _Loop) -> _Loop:
            actions, ls = observe_and_act(ls)
            t, running = ls.t, ls.running
            packed = jnp.concatenate([actions, running[:, None].astype(jnp.int32)], axis=-1)
            env_carry, (obs, state, avail, reward, terminated, truncated, won) = env.step_batch(ls.env_carry, packed)
            buf = dict(ls.buf, reward=ls.buf["reward"].at[t].set(reward),
                       terminated=ls.buf["terminated"].at[t].set(terminated),
                       truncated=ls.buf["truncated"].at[t].set(truncated))
            done = running & (terminated | truncated)
            last_onehot = jax.nn.one_hot(actions, n_act, dtype=jnp.float32)
            return _Loop(t + 1, env_carry, obs, state, avail, ls.hidden, last_onehot, running & ~done, running,
                         jnp.where(done, won, ls.won), buf)

        hidden_dim = spec.hidden_dim if spec is not None and spec.recurrent else 0
        everyone = jnp.ones((n,), jnp.bool_)
        ls = _Loop(t=jnp.int32(0), env_carry=env_carry, obs=obs, state=state, avail=avail,
                   hidden=jnp.zeros((n, info.n_agents, hidden_dim), jnp.float32),
                   last_onehot=jnp.zeros((n, info.n_agents, n_act), jnp.float32),
                   running=everyone, recording=everyone, won=jnp.zeros((n,), jnp.bool_),
                   buf={name: jnp.zeros(rows.shape, jnp.int32 if name == "actions" else rows.dtype)
                        for name, rows in self._buf.items()})
        ls = jax.lax.while_loop(lambda ls: (ls.t < limit) & ls.running.any(), step, ls)
        _, ls = observe_and_act(ls)  # the state where every episode has ended, and its actions
        t, running, buf = ls.t, ls.running, ls.buf
        # an env that did not end its episode at episode_limit is cut there
        buf["truncated"] = buf["truncated"].at[t - 1].set(buf["truncated"][t - 1] | running)
        return t, ls.won, buf
