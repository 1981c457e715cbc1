"""Lightning callbacks of the training loop: checkpoints and durable metrics, the stop
signal, and progress output."""

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

    def __init__(self, ckpt_dir: Path, every_iters: int, config: dict[str, Any]) -> None:
        self.dir, self.every_iters, self.config = Path(ckpt_dir), every_iters, config
        self.best: float | None = None  # best test return of a saved best.ckpt
        self.best_env_steps: int | None = None
        self.last_saved: tuple[int, int] | None = None  # (batches, env steps) of the last last.ckpt
        self._evaluations = 0

    @property
    def last_path(self) -> Path:
        return self.dir / LAST

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._evaluations = len(pl_module.test_history)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        for lg in trainer.loggers:
            lg.save()
        dm = trainer.datamodule
        history = pl_module.test_history
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
def last_test(pl_module: Any) -> str:
    """The latest evaluation's return and when it was made, for progress output."""
    if not pl_module.test_history:
        return "none yet"
    h = pl_module.test_history[-1]
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
        return {"last test return": last_test(pl_module)}


class ProgressLog(Callback):
    """Progress without a terminal (SLURM, nohup): every ``every_s`` seconds one line on the
    ``lica.progress`` logger -- env steps done of the budget, the rate of this segment, the
    ETA and the last test return.  The run's logging set-up sends it to stdout (a SLURM
    job's ``.out``) and to ``<run dir>/train.log``."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
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
                f"{rate:,.0f} env-steps/s, ETA {eta}, last test return {last_test(pl_module)}")
