"""The vectorised env worker pool: W processes, each owning k environments.

All environments step in lock-step.  Actions, seeds and results travel through
shared-memory numpy buffers (no pickling per step); each worker only gets a one-word
command over its pipe as raw bytes and answers with an empty message (done) or the
error of the env that failed, and the parent waits for all answers with one
``select.poll`` over the pipes and the process sentinels: per step the pool costs a few
system calls, not Python-level pickling and selector set-up.
``num_workers=0`` runs the same env slice in-process (for debugging and determinism
tests).

Failure handling: the parent waits on every worker's pipe *and* process sentinel with
a timeout, so a worker that dies (segfault, OOM kill) or hangs raises a
:class:`EnvWorkerError` naming the worker and its envs instead of blocking forever.
Workers ignore SIGINT (the parent handles Ctrl-C and closes them), exit when the
parent's pipe closes, and are terminated on :meth:`close`, at interpreter exit, or
when the pool is garbage-collected.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import select
import signal
import traceback
import weakref
from multiprocessing import shared_memory
from typing import Callable

import numpy as np

from lica.envs.base import EnvInfo, MultiAgentEnv, Observation, VecEnv, VecStep


class EnvWorkerError(RuntimeError):
    """An env worker died, hung, or one of its environments raised."""


def _buffer_layout(info: EnvInfo, n: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Every array shared between the parent and the workers, by name."""
    a = info.n_agents
    return {
        "actions": ((n, a), np.int64),
        "active": ((n,), np.bool_),
        "seeds": ((n,), np.int64),
        "obs": ((n, a, info.obs_dim), np.float32),
        "state": ((n, info.state_dim), np.float32),
        "avail": ((n, a, info.n_actions), np.bool_),
        "reward": ((n,), np.float32),
        "terminated": ((n,), np.bool_),
        "truncated": ((n,), np.bool_),
        "won": ((n,), np.bool_),
    }


class _EnvSlice:
    """k environments writing into rows ``[lo, hi)`` of the shared buffers."""

    def __init__(self, envs: list[MultiAgentEnv], lo: int, buffers: dict[str, np.ndarray]) -> None:
        self.envs, self.lo = envs, lo
        self.rows = slice(lo, lo + len(envs))
        self.buf = buffers
        self._indexed = list(enumerate(envs, lo))

    def reset(self) -> None:
        b = self.buf
        obs, state, avail, seeds = b["obs"], b["state"], b["avail"], b["seeds"]
        for i, env in self._indexed:
            obs[i], state[i], avail[i] = env.reset(seed=int(seeds[i]))

    def step(self) -> None:
        b = self.buf
        obs, state, avail, actions = b["obs"], b["state"], b["avail"], b["actions"]
        reward, terminated, truncated, won = b["reward"], b["terminated"], b["truncated"], b["won"]
        active = b["active"].tolist()
        for i, env in self._indexed:
            if active[i]:
                ob, reward[i], terminated[i], truncated[i], info = env.step(actions[i])
                obs[i], state[i], avail[i] = ob
                won[i] = bool(info.get("battle_won", False)) if info else False

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _attach(layout: dict, names: dict[str, str]) -> tuple[dict[str, np.ndarray], list]:
    blocks = {k: shared_memory.SharedMemory(name=names[k]) for k in layout}
    arrays = {k: np.ndarray(shape, dtype, buffer=blocks[k].buf) for k, (shape, dtype) in layout.items()}
    return arrays, list(blocks.values())


_CLOSE = b"close"
_COMMANDS = {b"reset": "reset", b"step": "step"}  # wire name -> _EnvSlice method


def _worker(conn, make_env: Callable[[], MultiAgentEnv], lo: int, k: int, n: int) -> None:
    """Worker process main loop: build k envs, then serve reset/step/close commands.

    Set-up messages are pickled; commands are raw bytes and the reply to each is an
    empty message (done) or the UTF-8 traceback of the env that raised."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    blocks: list = []
    env_slice = None
    current = lo
    try:
        envs = []
        for current in range(lo, lo + k):
            envs.append(make_env())
        conn.send(("info", envs[0].get_env_info()))
        message = conn.recv_bytes()
        if message == _CLOSE:
            return
        buffers, blocks = _attach(_buffer_layout(envs[0].get_env_info(), n), pickle.loads(message))
        env_slice = _EnvSlice(envs, lo, buffers)
        handlers = {wire: getattr(env_slice, name) for wire, name in _COMMANDS.items()}
        recv, send = conn.recv_bytes, conn.send_bytes
        while True:
            cmd = recv()
            if cmd == _CLOSE:
                break
            try:
                handlers[cmd]()
                send(b"")
            except Exception:  # report the env's error to the parent, keep serving close
                send(traceback.format_exc().encode() or b"error")
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass  # the parent went away
    except Exception:
        try:
            conn.send(("error", f"while building env {current}:\n{traceback.format_exc()}"))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if env_slice is not None:
            env_slice.close()
        del env_slice
        for block in blocks:
            block.close()


def _shutdown(processes: list, conns: list, blocks: list) -> None:
    """Close workers and free shared memory (also run by the finaliser at exit)."""
    for conn in conns:
        try:
            conn.send_bytes(_CLOSE)
        except (BrokenPipeError, OSError):
            pass
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():
            p.kill()
    for conn in conns:
        conn.close()
    for block in blocks:
        block.close()
        try:
            block.unlink()
        except FileNotFoundError:
            pass


class WorkerPoolVecEnv(VecEnv):
    """``num_envs`` envs across ``num_workers`` processes (0 = all in this process)."""

    def __init__(self, make_env: Callable[[], MultiAgentEnv], num_envs: int, num_workers: int,
                 start_method: str = "spawn", timeout_s: float = 120.0) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
        if num_workers and num_envs % num_workers:
            raise ValueError(
                f"{num_envs} envs cannot be split evenly over {num_workers} workers: choose "
                f"rollout.num_workers dividing rollout.batch_episodes (e.g. 1, 2, 4, 8).")
        self.num_envs, self.num_workers, self.timeout_s = num_envs, num_workers, timeout_s
        self._processes: list = []
        self._conns: list = []
        self._blocks: list = []
        self._closed = False
        if num_workers == 0:
            envs = [make_env() for _ in range(num_envs)]
            self.info = envs[0].get_env_info()
            self._buf = {k: np.zeros(shape, dtype) for k, (shape, dtype)
                         in _buffer_layout(self.info, num_envs).items()}
            self._local = _EnvSlice(envs, 0, self._buf)
            return
        self._local = None
        self._finalizer = weakref.finalize(self, _shutdown, self._processes, self._conns, self._blocks)
        ctx = mp.get_context(start_method)
        k = num_envs // num_workers
        for w in range(num_workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, make_env, w * k, k, num_envs),
                            name=f"lica-env-worker-{w}", daemon=True)
            p.start()
            child.close()
            self._processes.append(p)
            self._conns.append(parent)
        infos = self._gather("info")
        self.info = infos[0]
        if any(i != self.info for i in infos):
            raise EnvWorkerError(f"env workers built different environments: {infos}")
        layout = _buffer_layout(self.info, num_envs)
        names = {}
        for key, (shape, dtype) in layout.items():
            block = shared_memory.SharedMemory(create=True, size=max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize))
            self._blocks.append(block)
            names[key] = block.name
        self._buf = {k: np.ndarray(shape, dtype, buffer=b.buf)
                     for (k, (shape, dtype)), b in zip(layout.items(), self._blocks)}
        message = pickle.dumps(names)
        for conn in self._conns:
            conn.send_bytes(message)

    def _describe(self, w: int) -> str:
        k = self.num_envs // self.num_workers
        return f"env worker {w} (pid {self._processes[w].pid}, envs {w * k}-{(w + 1) * k - 1})"

    def _gather(self, expect: str) -> list:
        """Wait for one reply from every worker; raise on death, hang or env error.

        ``expect="info"``: the pickled set-up reply; otherwise the raw-bytes reply to a
        command (empty = done, else the env's traceback)."""
        pending = set(range(len(self._conns)))
        replies: dict[int, object] = {}
        owner: dict[int, tuple[int, bool]] = {}  # fd -> (worker, is the process sentinel)
        closed: set[int] = set()  # workers whose pipe reached EOF: only their sentinel is left
        poller = select.poll()
        for w in pending:
            for fd, sentinel in ((self._conns[w].fileno(), False), (self._processes[w].sentinel, True)):
                owner[fd] = (w, sentinel)
                poller.register(fd, select.POLLIN)
        timeout_ms = max(1, int(self.timeout_s * 1000))
        while pending:
            ready = poller.poll(timeout_ms)
            if not ready:
                names = ", ".join(self._describe(w) for w in sorted(pending))
                self.close()
                raise EnvWorkerError(
                    f"{names} did not answer within {self.timeout_s:.0f} s (hung env?). Raise "
                    "rollout.worker_timeout_s if its episodes are really that slow, or debug with "
                    "rollout.num_workers=0.")
            for fd, _ in ready:
                w, sentinel = owner[fd]
                if w not in pending:
                    continue
                conn = self._conns[w]
                if sentinel:  # the process ended
                    if w not in closed and conn.poll():
                        continue  # its reply is waiting on the pipe; read it first
                    self._processes[w].join(timeout=5)
                    code = self._processes[w].exitcode
                    self.close()
                    raise EnvWorkerError(
                        f"{self._describe(w)} died with exit code {code} (killed or crashed). "
                        "Check memory and the env; run with rollout.num_workers=0 to see the error in-process.")
                try:
                    if expect == "info":
                        kind, payload = conn.recv()
                    else:
                        data = conn.recv_bytes()
                        kind, payload = ("ok", None) if not data else ("error", data.decode(errors="replace"))
                except (EOFError, OSError):
                    closed.add(w)
                    poller.unregister(fd)  # the sentinel reports the death
                    continue
                if kind == "error":
                    self.close()
                    raise EnvWorkerError(f"{self._describe(w)} failed:\n{payload}")
                if kind != expect:
                    raise EnvWorkerError(f"{self._describe(w)} answered {kind!r}, expected {expect!r}")
                replies[w] = payload
                pending.discard(w)
                poller.unregister(fd)
                poller.unregister(self._processes[w].sentinel)
        return [replies[w] for w in range(len(self._conns))]

    def _run(self, cmd: str) -> None:
        if self._closed:
            raise EnvWorkerError("the env pool is closed")
        if self._local is not None:
            getattr(self._local, cmd)()
            return
        wire = cmd.encode()
        for conn in self._conns:
            conn.send_bytes(wire)
        self._gather("ok")

    def reset(self, seeds: np.ndarray) -> Observation:
        self._buf["seeds"][:] = seeds
        self._run("reset")
        return Observation(self._buf["obs"], self._buf["state"], self._buf["avail"])

    def step(self, actions: np.ndarray, active: np.ndarray) -> VecStep:
        b = self._buf
        b["actions"][:] = actions
        b["active"][:] = active
        self._run("step")
        return VecStep(b["obs"], b["state"], b["avail"], b["reward"], b["terminated"],
                       b["truncated"], b["won"])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._local is not None:
            self._local.close()
        else:
            self._finalizer()
