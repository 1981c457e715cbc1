"""Lightning callbacks of the training loop."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

HANDLED = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class PreemptionCheckpoint(Callback):
    """Save a resumable checkpoint when the job is told to stop, then stop cleanly.

    SIGUSR2 (SLURM's pre-timeout/preemption signal, sent by ``--signal``), SIGTERM and a
    first Ctrl-C are recorded; at the end of the current iteration (a consistent point:
    critic and actor both updated) the callback writes ``last.ckpt`` and stops the
    Trainer.  :func:`lica.train.train` then hands a SIGUSR2 on to the handler that was
    installed before training -- submitit's, which requeues the job -- so the requeued
    job resumes from that checkpoint in the same folder.  A second Ctrl-C interrupts at
    once (the periodic checkpoint is still there).
    """

    def __init__(self, ckpt_path: Path) -> None:
        self.ckpt_path = ckpt_path
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
            trainer.save_checkpoint(self.ckpt_path)
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
