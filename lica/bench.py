"""Throughput benchmark: ``python -m lica.bench`` (``make bench``).

Measures, in one run on one machine, three env-step rates per environment and worker
count, *side by side*: every repetition measures the three one after the other, so
slow drifts of a shared machine's load hit all three alike.

* **limit** -- the environment's own speed limit: the ``VecEnv`` (same ``num_envs``,
  same workers) stepping random valid actions, no policy; every environment runs one
  episode per batch, finished ones wait for the others and all are reset together
  (exactly as in the collector).
* **rollout** -- :meth:`lica.rollout.collector.Collector.collect` with the LICA actor
  of the composed config (the RNN agent by default): 32-episode training batches.  For
  the jax backend that is the fused whole-batch program
  (:mod:`lica.rollout.jax_collector`), which does not go through ``VecEnv.step`` at
  all; there the bench also measures **fused limit**: the same program with random
  valid actions and no actor, i.e. the env alone without per-step dispatch.
* **training** -- full LICA iterations (collect a batch + critic step + actor step)
  through the real Lightning ``Trainer`` and ``RolloutDataModule``, built by
  :class:`lica.experiment.Experiment` as for :func:`lica.train.train` (config composed
  from ``lica/conf/`` with ``env=<name>``).  Evaluation episodes are excluded: the
  evaluation callback measures their time and the bench's timer subtracts it.  The limit and rollout measurements of a repetition run *inside* the
  training fit, between training chunks (on their own envs, with their own RNGs; the
  training run does not see them).

* **update** -- milliseconds of one learner update (``module.update``, the default
  config's critic steps and actor step) on the same rollout batch, once with the exact
  fast critic path and once with the dense reference path (``algo.critic_fast_path``),
  side by side in every repetition; the module's state is restored after each.

Rates are training env steps (sum of episode lengths) per second of wall time; the
table shows the median over repetitions and the ratios rollout/limit and
training/limit (medians of the per-repetition ratios).  A JSON file holds every
repetition and the machine's description.

Examples::

    python -m lica.bench                                  # everything installed
    python -m lica.bench --envs spread --workers 2 --reps 5
    python -m lica.bench --envs spread --set trainer.torch_threads=2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from lica.seeding import Stream, episode_seeds, sampling_generator

DEFAULT_ENVS = ("spread", "spread5", "predator_prey", "jax_spread", "smax_5m_vs_6m")
DEFAULT_WORKERS = (0, 1, 2, 4)


# --------------------------------------------------------------------------- settings


@dataclass
class BenchSettings:
    envs: tuple[str, ...] = DEFAULT_ENVS
    workers: tuple[int, ...] = DEFAULT_WORKERS
    reps: int = 3
    min_seconds: float = 2.0  # each measurement runs at least this long ...
    min_batches: int = 2  # ... and at least this many batches / iterations
    warmup_batches: int = 1  # untimed batches / iterations before the first repetition
    train: bool = True
    overrides: tuple[str, ...] = ()  # extra Hydra overrides for every env
    seed: int = 0
    accelerators: tuple[str, ...] = ("cpu",)  # learner devices measured side by side (cpu, gpu)


@dataclass
class Measurement:
    """One repetition of one quantity: env steps, seconds and batches."""

    env_steps: int
    seconds: float
    batches: int

    @property
    def rate(self) -> float:
        return self.env_steps / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class CaseResult:
    env: str
    backend: str
    workers: int | None  # None: natively batched backend (no worker processes)
    accelerator: str = "cpu"  # where the learner runs (trainer.accelerator)
    info: dict[str, Any] = field(default_factory=dict)
    limit: list[Measurement] = field(default_factory=list)
    rollout: list[Measurement] = field(default_factory=list)
    training: list[Measurement] = field(default_factory=list)
    fused_limit: list[Measurement] = field(default_factory=list)  # jax backend only
    update_ms: dict[str, list[float]] = field(default_factory=lambda: {"fast": [], "dense": []})

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"env": self.env, "backend": self.backend, "workers": self.workers,
                               "accelerator": self.accelerator,
                               **self.info}
        for name in ("limit", "rollout", "training", "fused_limit"):
            ms: list[Measurement] = getattr(self, name)
            out[name] = {
                "env_steps_per_s": _median([m.rate for m in ms]),
                "reps": [{"env_steps": m.env_steps, "seconds": round(m.seconds, 4), "batches": m.batches,
                          "env_steps_per_s": round(m.rate, 1)} for m in ms],
            }
        out["rollout_over_limit"] = _median([r.rate / lim.rate for r, lim in zip(self.rollout, self.limit)])
        out["training_over_limit"] = _median([r.rate / lim.rate for r, lim in zip(self.training, self.limit)])
        out["rollout_over_fused_limit"] = _median([r.rate / lim.rate for r, lim in zip(self.rollout,
                                                                                       self.fused_limit)])
        out["update_ms"] = {k: {"median": _median(v), "reps": [round(x, 2) for x in v]}
                            for k, v in self.update_ms.items()}
        out["update_dense_over_fast"] = _median([d / f for f, d in zip(self.update_ms["fast"],
                                                                       self.update_ms["dense"])])
        return out


def _median(xs: list[float]) -> float | None:
    return float(statistics.median(xs)) if xs else None


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable,
        "platform": platform.platform(), "python": sys.version.split()[0],
        "torch": torch.__version__, "torch_num_threads_default": torch.get_num_threads(),
        "numpy": np.__version__,
    }
    for dist in ("pytorch-lightning", "mpe2", "jax", "jaxlib", "jaxmarl"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, ValueError):
        mem = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    return info


# --------------------------------------------------------------------------- config


def compose(env: str, overrides: tuple[str, ...] = ()) -> Any:
    """``lica/conf/train.yaml`` composed as ``python -m lica.train env=<env> <overrides>``."""
    from lica.config import compose as compose_train

    return compose_train([f"env={env}", *overrides])


def backend_available(backend: str) -> str | None:
    """None when the backend imports, else why not."""
    from lica.config import EnvConfig
    from lica.envs import backend_module

    try:
        backend_module(EnvConfig(backend=backend, scenario=""))
    except ImportError as err:
        return str(err).splitlines()[0]
    return None


# --------------------------------------------------------------------------- measurements


def random_episode_batch(vec: Any, seeds: np.ndarray, rng: np.random.Generator) -> int:
    """One episode in every env of ``vec`` with uniformly random *available* actions,
    stepped in lock-step exactly as the collector steps them; returns the env steps."""
    n, limit = vec.num_envs, vec.info.episode_limit
    avail = vec.reset(seeds).avail
    running = np.ones(n, np.bool_)
    steps = 0
    for _ in range(limit):
        actions = np.argmax(rng.random(avail.shape) * avail, axis=-1)
        res = vec.step(actions, running)
        steps += int(running.sum())
        running &= ~(res.terminated | res.truncated)
        if not running.any():
            break
        avail = res.avail
    return steps


def _timed(run_batch: Callable[[], int], min_seconds: float, min_batches: int) -> Measurement:
    steps = batches = 0
    start = time.perf_counter()
    while True:
        steps += run_batch()
        batches += 1
        elapsed = time.perf_counter() - start
        if batches >= min_batches and elapsed >= min_seconds:
            return Measurement(steps, elapsed, batches)


class _SideBySide:
    """The limit and rollout measurements of one (env, workers) case, on their own
    ``VecEnv`` (the training run has its own)."""

    def __init__(self, cfg: Any, workers: int | None, settings: BenchSettings) -> None:
        from lica.envs import make_vec_env
        from lica.rollout import make_collector

        self.settings = settings
        r = cfg.rollout
        self.vec = make_vec_env(cfg.env, r.batch_episodes, workers or 0, r.start_method, r.worker_timeout_s)
        self.collector = make_collector(self.vec)
        self.fused = hasattr(self.collector, "random_episodes")
        self.rng = np.random.default_rng(settings.seed)
        self.generator = sampling_generator(settings.seed)
        self.batch_index = 0
        self.last_batch: Any = None

    def _next_seeds(self) -> np.ndarray:
        self.batch_index += 1
        return episode_seeds(self.settings.seed, Stream.BENCH, self.vec.num_envs, index=self.batch_index)

    def limit_batch(self) -> int:
        return random_episode_batch(self.vec, self._next_seeds(), self.rng)

    def rollout_batch(self, policy: Any) -> int:
        self.last_batch = self.collector.collect(policy, self._next_seeds(), greedy=False, generator=self.generator)
        return int(self.last_batch.stats.lengths.sum())

    def fused_limit_batch(self) -> int:
        return self.collector.random_episodes(self._next_seeds(), self.generator)

    def warm_up(self, policy: Any) -> None:
        for _ in range(self.settings.warmup_batches):
            self.limit_batch()
            self.rollout_batch(policy)
            if self.fused:
                self.fused_limit_batch()

    def measure(self, policy: Any, case: CaseResult, module: Any = None) -> None:
        """One repetition of limit, rollout (and fused limit), appended to ``case``; with
        the training ``module``, also one update with each critic path on the last
        rollout batch (:func:`time_updates`)."""
        s = self.settings
        case.limit.append(_timed(self.limit_batch, s.min_seconds, s.min_batches))
        case.rollout.append(_timed(lambda: self.rollout_batch(policy), s.min_seconds, s.min_batches))
        if self.fused:
            case.fused_limit.append(_timed(self.fused_limit_batch, s.min_seconds, s.min_batches))
        if module is not None:
            for path, ms in time_updates(module, self.last_batch).items():
                case.update_ms[path].append(ms)

    def close(self) -> None:
        self.vec.close()


def time_updates(module: Any, batch: Any) -> dict[str, float]:
    """Milliseconds of one ``module.update(batch)`` with the fast and with the dense
    critic path (``algo.critic_fast_path``), side by side on the same batch.  Networks,
    optimiser states, counters and the torch RNG are restored after each, so the
    training run does not see these updates."""
    import copy

    import torch

    optimizers = module.trainer.optimizers
    replay = list(getattr(module, "replay", []))  # LICA's critic replay (algo.critic_replay)
    saved = (copy.deepcopy(module.state_dict()), [copy.deepcopy(o.state_dict()) for o in optimizers],
             module.critic_steps, module.target_copied_at, torch.get_rng_state(), module.algo.critic_fast_path)
    batch = batch.to(module.device)
    cuda = module.device.type == "cuda"
    out = {}
    try:
        for path in ("fast", "dense"):
            module.algo.critic_fast_path = path == "fast"
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            module.update(batch)
            if cuda:
                torch.cuda.synchronize()
            out[path] = (time.perf_counter() - start) * 1e3
            state, opt_states, module.critic_steps, module.target_copied_at, rng, _ = saved
            module.load_state_dict(state)
            for opt, opt_state in zip(optimizers, opt_states):
                opt.load_state_dict(copy.deepcopy(opt_state))
            torch.set_rng_state(rng)
            if hasattr(module, "replay"):
                module.replay = list(replay)
    finally:
        module.algo.critic_fast_path = saved[-1]
    return out


def _training_callback(settings: BenchSettings, side: _SideBySide, case: CaseResult, evaluation: Any) -> Any:
    """A Lightning callback timing training iterations in repetitions; before each
    repetition it runs that repetition's limit and rollout measurements.  The time the
    run's ``evaluation`` (:class:`lica.callbacks.Evaluation`) spends testing is subtracted."""
    import pytorch_lightning as pl

    class BenchTimer(pl.Callback):
        """A repetition's training chunk runs from the start of one iteration to the
        start of a later one (so it includes everything Lightning does in between)."""

        def __init__(self) -> None:
            self.iteration = 0
            self.chunk: dict[str, float] | None = None

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            now = time.perf_counter()
            dm = trainer.datamodule
            if self.chunk is not None:
                elapsed = now - self.chunk["start"]
                if self.chunk["iters"] < settings.min_batches or elapsed < settings.min_seconds:
                    return
                seconds = elapsed - (evaluation.seconds - self.chunk["eval"])
                case.training.append(Measurement(dm.env_steps - int(self.chunk["steps"]), seconds,
                                                 int(self.chunk["iters"])))
                self.chunk = None
            if len(case.training) >= settings.reps:
                trainer.should_stop = True  # this last iteration runs untimed
                return
            if self.iteration >= settings.warmup_batches:
                side.measure(module.rollout_policy(), case, module)
                self.chunk = {"start": time.perf_counter(), "eval": evaluation.seconds,
                              "steps": dm.env_steps, "iters": 0}

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.iteration += 1
            if self.chunk is not None:
                self.chunk["iters"] += 1

    return BenchTimer()


def run_training(cfg: Any, side: _SideBySide, case: CaseResult, settings: BenchSettings) -> None:
    """The real training loop, built as :func:`lica.train.train` builds it
    (:class:`lica.experiment.Experiment`), timed by :func:`_training_callback`."""
    from omegaconf import OmegaConf

    from lica.config import TrainConfig, validate
    from lica.experiment import Experiment
    from lica.loggers import build_loggers

    tcfg: TrainConfig = OmegaConf.to_object(cfg)
    validate(tcfg)
    with tempfile.TemporaryDirectory(prefix="lica-bench-") as run_dir, _quiet_lightning():
        experiment = Experiment(tcfg)
        try:
            side.warm_up(experiment.module.rollout_policy())
            timer = _training_callback(settings, side, case, experiment.evaluation)
            experiment.fit(experiment.trainer(Path(run_dir), build_loggers(tcfg, Path(run_dir)), [timer]))
        finally:
            experiment.close()


def run_side_by_side_only(cfg: Any, side: _SideBySide, case: CaseResult, settings: BenchSettings) -> None:
    """Limit and rollout without training (``--no-train``)."""
    import torch
    from omegaconf import OmegaConf

    from lica.models.agents import MultiAgentPolicy

    tcfg = OmegaConf.to_object(cfg)
    torch.manual_seed(tcfg.seed)
    torch.set_num_threads(tcfg.trainer.torch_threads)
    info = side.vec.info
    policy = MultiAgentPolicy(info.obs_dim, info.n_agents, info.n_actions, tcfg.algo.agent)
    side.warm_up(policy)
    for _ in range(settings.reps):
        side.measure(policy, case)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    import logging
    import warnings

    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def run_case(env: str, workers: int | None, settings: BenchSettings, accelerator: str = "cpu") -> CaseResult:
    from lica.envs import backend_module

    overrides = [
        f"trainer.accelerator={accelerator}",
        "rollout.eval_interval=1000000000",  # only the (excluded) evaluation before training
        "trainer.max_env_steps=1000000000000",  # the bench stops the fit itself
        "trainer.enable_progress_bar=false",
        *settings.overrides,
    ]
    if workers is not None:
        overrides.append(f"rollout.num_workers={workers}")
    cfg = compose(env, tuple(overrides))
    case = CaseResult(env=env, backend=cfg.env.backend, workers=workers, accelerator=accelerator)
    side = _SideBySide(cfg, workers, settings)
    try:
        info = side.vec.info
        case.info = {"num_envs": side.vec.num_envs, "n_agents": info.n_agents, "n_actions": info.n_actions,
                     "obs_dim": info.obs_dim, "state_dim": info.state_dim, "episode_limit": info.episode_limit,
                     "torch_threads": cfg.trainer.torch_threads, "agent": cfg.algo.agent.type,
                     "native_batched": hasattr(backend_module(cfg.env), "make_vec_env")}
        if settings.train:
            run_training(cfg, side, case, settings)
        else:
            run_side_by_side_only(cfg, side, case, settings)
    finally:
        side.close()
    return case


# --------------------------------------------------------------------------- driver


def run_bench(settings: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    from lica.envs import backend_module

    started = time.time()
    machine = machine_info()
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    failed: list[dict[str, Any]] = []
    for env in settings.envs:
        cfg = compose(env, settings.overrides)
        why = backend_available(cfg.env.backend)
        if why is not None:
            skipped.append({"env": env, "reason": why})
            log(f"-- {env}: skipped ({why})")
            continue
        pooled = not hasattr(backend_module(cfg.env), "make_vec_env")
        for w, acc in [(w, acc) for w in (settings.workers if pooled else (None,)) for acc in settings.accelerators]:
            log(f"-- {env}, workers={'-' if w is None else w}, learner on {acc} ...")
            t0 = time.perf_counter()
            try:
                res = run_case(env, w, settings, acc).summary()
            except Exception as err:  # one broken backend must not lose the other numbers
                failed.append({"env": env, "workers": w, "accelerator": acc, "error": f"{type(err).__name__}: {err}"})
                log(f"   failed: {type(err).__name__}: {err}")
                continue
            res["case_wall_s"] = round(time.perf_counter() - t0, 1)
            results.append(res)
            log("   " + _row(res))
    with contextlib.suppress(OSError):
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "machine": machine,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(settings).items()},
        "results": results,
        "skipped": skipped,
        "failed": failed,
        "wall_s": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


_HEADER = (f"{'env':<15}{'W':>3}{'learner':>8}{'limit':>10}{'rollout':>10}{'training':>10}"
           f"{'roll/lim':>10}{'train/lim':>10}{'fused lim':>11}{'roll/fused':>11}"
           f"{'upd fast ms':>13}{'upd dense ms':>14}{'dense/fast':>12}")


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _row(r: dict[str, Any]) -> str:
    w = "-" if r["workers"] is None else str(r["workers"])
    return (f"{r['env']:<15}{w:>3}{r.get('accelerator', 'cpu'):>8}{_fmt(r['limit']['env_steps_per_s'], '.0f'):>10}"
            f"{_fmt(r['rollout']['env_steps_per_s'], '.0f'):>10}{_fmt(r['training']['env_steps_per_s'], '.0f'):>10}"
            f"{_fmt(r['rollout_over_limit'], '.2f'):>10}{_fmt(r['training_over_limit'], '.2f'):>10}"
            f"{_fmt(r['fused_limit']['env_steps_per_s'], '.0f'):>11}{_fmt(r['rollout_over_fused_limit'], '.2f'):>11}"
            f"{_fmt(r['update_ms']['fast']['median'], '.1f'):>13}{_fmt(r['update_ms']['dense']['median'], '.1f'):>14}"
            f"{_fmt(r['update_dense_over_fast'], '.2f'):>12}")


def format_table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"lica bench: env-steps/s, median of {report['settings']['reps']} side-by-side repetitions "
        f"({report['results'][0]['num_envs'] if report['results'] else '?'} envs per batch)",
        f"machine: {m['cpu_model']}, {m['usable_cores']} usable cores, python {m['python']}, "
        f"torch {m['torch']}, jax {m.get('jax') or '-'}",
        _HEADER,
        "-" * len(_HEADER),
    ]
    lines += [_row(r) for r in report["results"]]
    for s in report["skipped"]:
        lines.append(f"{s['env']:<15}  skipped: {s['reason']}")
    for f in report.get("failed", []):
        lines.append(f"{f['env']:<15}  FAILED (workers={f['workers']}, learner on {f.get('accelerator', 'cpu')}): "
                     f"{f['error']}")
    return "\n".join(lines)


def _csv(kind: Callable[[str], Any]) -> Callable[[str], tuple]:
    return lambda s: tuple(kind(x) for x in s.split(",") if x.strip())


def parse_args(argv: list[str] | None = None) -> tuple[BenchSettings, Path]:
    p = argparse.ArgumentParser(prog="python -m lica.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=_csv(str), default=DEFAULT_ENVS,
                   help="comma-separated lica/conf/env names (default: %(default)s)")
    p.add_argument("--workers", type=_csv(int), default=DEFAULT_WORKERS,
                   help="worker counts for process-pool backends (default: 0,1,2,4)")
    p.add_argument("--reps", type=int, default=3, help="repetitions; the table shows medians")
    p.add_argument("--min-seconds", type=float, default=2.0, help="minimum duration of each measurement")
    p.add_argument("--min-batches", type=int, default=2, help="minimum batches/iterations per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches/iterations first")
    p.add_argument("--no-train", action="store_true", help="measure limit and rollout only")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every env (repeatable), e.g. trainer.torch_threads=2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerators", type=_csv(str), default=("cpu",),
                   help="learner devices, side by side (default: cpu; a GPU machine: cpu,gpu)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/bench.json"))
    a = p.parse_args(argv)
    if a.reps < 1 or a.min_batches < 1 or a.warmup < 0:
        p.error("--reps and --min-batches must be >= 1, --warmup >= 0")
    if any(w < 0 for w in a.workers):
        p.error("--workers must be >= 0")
    settings = BenchSettings(envs=a.envs, workers=a.workers, reps=a.reps, min_seconds=a.min_seconds,
                             min_batches=a.min_batches, warmup_batches=a.warmup, train=not a.no_train,
                             overrides=tuple(a.overrides), seed=a.seed, accelerators=a.accelerators)
    return settings, a.out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, out = parse_args(argv)
    report = run_bench(settings, log=lambda s: print(s, file=sys.stderr, flush=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"(written to {out})")
    return report


if __name__ == "__main__":
    main()
