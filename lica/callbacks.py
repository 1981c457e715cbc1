"""Lightning callbacks of the training loop: the evaluation schedule and each iteration's
metrics row, checkpoints and durable metrics, the stop signal, and progress output."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, TQDMProgressBar

from lica.resume import BEST, CONFIG_KEY, LAST

HANDLED = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)
log = logging.getLogger("lica.progress")


class Evaluation(Callback):
    """When the policy is tested, and the metrics row of every training iteration.

    * A fresh run first tests the untrained policy (at the start of training), logged as
      step 0.
    * After every training iteration: a test when ``eval_interval`` env steps have passed
      since the last one or the budget ``max_env_steps`` is spent; then the iteration's
      row -- the module's metrics (``training_step``'s output: the update's metrics and
      the batch's episode statistics) plus the test metrics -- goes to every logger with
      ``env_steps`` as the x-axis, at step = the number of batches so far (Lightning's
      ``self.log`` would re-emit stale step values at the epoch end).
    * A test is ``rollout.test_episodes`` greedy episodes on the DataModule's evaluation
      envs (:meth:`lica.rollout.datamodule.RolloutDataModule.evaluate`).
      :attr:`test_history` lists every test with its env steps and the logger step of its
      row (so a resumed CSV can restore a lost row); :attr:`seconds` is the time spent
      testing.  :attr:`next_eval_at` and :attr:`test_history` are part of every checkpoint.
    """

    def __init__(self, eval_interval: int, max_env_steps: int) -> None:
        self.eval_interval, self.max_env_steps = eval_interval, max_env_steps
        self.next_eval_at = 0
        self.test_history: list[dict[str, float]] = []
        self.seconds = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.test_history:  # the untrained policy, before any update
            self._log(trainer, self._test(trainer, pl_module), step=0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: dict[str, float], *_: Any) -> None:
        if not outputs:  # the budget was spent: training_step found no batch (Lightning still calls this hook)
            return
        dm = trainer.datamodule
        metrics = dict(outputs)
        if dm.env_steps >= self.next_eval_at or dm.env_steps >= self.max_env_steps:
            metrics.update(self._test(trainer, pl_module))
        self._log(trainer, metrics, step=dm.batches)

    def _test(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, float]:
        dm = trainer.datamodule
        start = time.perf_counter()
        metrics = dm.evaluate(pl_module.rollout_policy())
        self.seconds += time.perf_counter() - start
        self.test_history.append({"env_steps": dm.env_steps, "step": dm.batches, **metrics})
        self.next_eval_at = dm.env_steps + self.eval_interval
        return metrics

    @staticmethod
    def _log(trainer: pl.Trainer, metrics: dict[str, float], step: int) -> None:
        row = {**metrics, "env_steps": float(trainer.datamodule.env_steps)}
        for lg in trainer.loggers:
            lg.log_metrics(row, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"next_eval_at": self.next_eval_at, "test_history": self.test_history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.next_eval_at, self.test_history = state_dict["next_eval_at"], list(state_dict["test_history"])

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Checkpoints of lica before this callback kept the schedule with the module."""
        if self.state_key not in checkpoint.get("callbacks", {}) and "test_history" in checkpoint.get("lica", {}):
            self.load_state_dict(checkpoint["lica"])

    @classmethod
    def history_in(cls, checkpoint: dict[str, Any]) -> list[dict[str, float]]:
        """The test history a checkpoint holds ([] for none)."""
        state = checkpoint.get("callbacks", {}).get(cls.__qualname__) or checkpoint.get("lica", {})
        return list(state.get("test_history", []))


class RunCheckpoints(Callback):
    """The run's checkpoint files, and when metrics reach the disk.

    At the end of every training iteration the loggers are flushed (so every metrics row is
    on disk before any checkpoint that follows it); every ``every_iters`` iterations
    ``last.ckpt`` is written, and ``best.ckpt`` whenever an evaluation of the current
    parameters beats the best test return so far (the untrained policy's evaluation, made
    before the first update, does not count: those parameters are gone by then).
    :meth:`save_last` is also what the stop-signal handler and the end of training call:
    there is one latest checkpoint file.  The Trainer's checkpoint IO
    (:class:`lica.resume.AtomicCheckpointIO`) writes each file atomically and keeps the
    previous ``last.ckpt``.  Every checkpoint carries the run's resolved config
    (``checkpoint["lica_config"]``), against which a resume is checked.

    Lightning's ``ModelCheckpoint`` is not used: it counts optimiser steps (one per critic
    update plus one actor step per iteration, which depends on the algorithm), and the
    signal handler needs to write the very file the periodic saves write.
    """

    def __init__(self, ckpt_dir: Path, every_iters: int, config: dict[str, Any], evaluation: Evaluation) -> None:
        self.dir, self.every_iters, self.config, self.evaluation = Path(ckpt_dir), every_iters, config, evaluation
        self.best: float | None = None  # best test return of a saved best.ckpt
        self.best_env_steps: int | None = None
        self.last_saved: tuple[int, int] | None = None  # (batches, env steps) of the last last.ckpt
        self._evaluations = 0

    @property
    def last_path(self) -> Path:
        return self.dir / LAST

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._evaluations = len(self.evaluation.test_history)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        for lg in trainer.loggers:
            lg.save()
        dm = trainer.datamodule
        history = self.evaluation.test_history
        fresh = [h for h in history[self._evaluations:] if h["env_steps"] == dm.env_steps]
        self._evaluations = len(history)
        if fresh and (self.best is None or fresh[-1]["test_return_mean"] > self.best):
            self.best, self.best_env_steps = fresh[-1]["test_return_mean"], dm.env_steps
            trainer.save_checkpoint(self.dir / BEST, weights_only=False)
        if dm.batches % self.every_iters == 0:
            self.save_last(trainer)

    def save_last(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` (the previous one becomes ``last.prev.ckpt``)."""
        dm = trainer.datamodule
        trainer.save_checkpoint(self.last_path, weights_only=False)
        self.last_saved = (dm.batches, dm.env_steps)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_env_steps": self.best_env_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best, self.best_env_steps = state_dict["best"], state_dict["best_env_steps"]


class PreemptionCheckpoint(Callback):
    """Save a resumable checkpoint when the job is told to stop, then stop cleanly.

    SIGUSR2 (SLURM's pre-timeout/preemption signal, sent by ``--signal``), SIGTERM and a
    first Ctrl-C are recorded; at the end of the current iteration (a consistent point:
    critic and actor both updated) the callback writes ``last.ckpt`` through
    :class:`RunCheckpoints` (unless that iteration's periodic save just wrote it) and stops
    the Trainer.  :func:`lica.train.train` then hands a SIGUSR2 on to the handler that was
    installed before training -- submitit's, which requeues the job -- so the requeued
    job resumes from that checkpoint in the same folder.  A second Ctrl-C interrupts at
    once (the periodic checkpoint is still there).
    """

    def __init__(self, checkpoints: RunCheckpoints) -> None:
        self.checkpoints = checkpoints
        self.received: signal.Signals | None = None
        self.previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for sig in HANDLED:
            self.previous[sig] = signal.signal(sig, self._on_signal)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if self.received is not None and not trainer.should_stop:
            dm = trainer.datamodule
            if self.checkpoints.last_saved != (dm.batches, dm.env_steps):
                self.checkpoints.save_last(trainer)
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def forward_signal(self) -> None:
        """Pass a received SIGUSR2 on to the handler installed before training (submitit
        requeues the job there and exits)."""
        handler: Callable | int | None = self.previous.get(signal.SIGUSR2)
        if self.received == signal.SIGUSR2 and callable(handler):
            handler(signal.SIGUSR2, None)


# -- progress ------------------------------------------------------------------------------
def last_test(evaluation: Evaluation) -> str:
    """The latest evaluation's return and when it was made, for progress output."""
    if not evaluation.test_history:
        return "none yet"
    h = evaluation.test_history[-1]
    return f"{h['test_return_mean']:.2f} (at {h['env_steps']:,})"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class EnvStepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar (used when stdout is a terminal), counting env steps instead of
    batches: the total is the budget ``trainer.max_env_steps``, the rate and ETA come from
    the env steps of this segment only (a resumed run starts the bar at its checkpoint's
    count: tqdm's ``initial``), and the postfix is the last test return."""

    BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} env steps [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    def __init__(self, evaluation: Evaluation) -> None:
        super().__init__()
        self.evaluation = evaluation

    def init_train_tqdm(self) -> Any:
        bar = super().init_train_tqdm()
        bar.desc, bar.unit, bar.unit_scale = "lica", "steps", True
        return bar

    def on_train_epoch_start(self, trainer: pl.Trainer, *_: Any) -> None:
        dm, bar = trainer.datamodule, self.train_progress_bar
        bar.reset(total=dm.max_env_steps)
        bar.initial = bar.n = dm.env_steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *_: Any) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = trainer.datamodule.env_steps
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def get_metrics(self, trainer: pl.Trainer, pl_module: Any) -> dict[str, Any]:
        return {"last test return": last_test(self.evaluation)}


class ProgressLog(Callback):
    """Progress without a terminal (SLURM, nohup): every ``every_s`` seconds one line on the
    ``lica.progress`` logger -- env steps done of the budget, the rate of this segment, the
    ETA and the last test return.  The run's logging set-up sends it to stdout (a SLURM
    job's ``.out``) and to ``<run dir>/train.log``."""

    def __init__(self, every_s: float, evaluation: Evaluation) -> None:
        self.every_s, self.evaluation = every_s, evaluation
        self._start = self._last = 0.0
        self._start_steps = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._start = self._last = time.monotonic()
        self._start_steps = trainer.datamodule.env_steps

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *_: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            log.info(self.line(trainer, pl_module, now))

    def line(self, trainer: pl.Trainer, pl_module: Any, now: float) -> str:
        dm = trainer.datamodule
        rate = (dm.env_steps - self._start_steps) / max(now - self._start, 1e-9)
        left = max(dm.max_env_steps - dm.env_steps, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        return (f"{dm.env_steps:,}/{dm.max_env_steps:,} env steps ({100 * dm.env_steps / dm.max_env_steps:.1f} %), "
                f"{rate:,.0f} env-steps/s, ETA {eta}, last test return {last_test(self.evaluation)}")
