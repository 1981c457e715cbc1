"""What makes a run folder safe to resume: one process at a time, checkpoint files that are
never half-written, a fallback when the latest is damaged, and a config check.

* :class:`RunLock` -- an exclusive ``fcntl.flock`` on ``<run dir>/.lica.lock`` for as
  long as a run uses the folder; a second run on the same folder fails at once, naming
  the process that holds it.  The kernel releases the lock when the holder exits, however
  it exits (``kill -9`` included), so a requeued or resumed job never finds a stale lock.
* :class:`AtomicCheckpointIO` -- Lightning's ``TorchCheckpointIO`` writing each file to
  ``<name>.tmp`` in the same folder, ``fsync``-ing it, then renaming it over the target;
  ``last.ckpt`` is first renamed to ``last.prev.ckpt``, so the previous good checkpoint
  is always there too.
* :func:`load_resume_checkpoint` -- the checkpoint a run resumes from (``last.ckpt``,
  else ``last.prev.ckpt`` with a message when the latest cannot be read).
* :func:`config_differences` -- the learning-relevant settings in which the current
  config differs from the one saved in the checkpoint (:data:`MAY_CHANGE_ON_RESUME`
  lists the settings that may change).
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from lica.config import TrainConfig, train_config
from lica.variants import EXECUTION_ONLY, flatten, schema_defaults

log = logging.getLogger(__name__)

LAST, PREVIOUS, BEST = "last.ckpt", "last.prev.ckpt", "best.ckpt"
CONFIG_KEY = "lica_config"  # the run's resolved config, saved in every checkpoint

# Settings that may differ between a checkpoint and the run that resumes it: the budget,
# the evaluation schedule and size, checkpoint cadence, loggers, progress output, and how
# the work is executed (workers, threads, device).  Everything else must match.
MAY_CHANGE_ON_RESUME = (
    # how the run executes (lica.variants), except the seed ...
    *(key for key in EXECUTION_ONLY if key != "seed"),
    # ... and how long it trains and how it is evaluated
    "trainer.max_env_steps", "rollout.eval_interval", "rollout.test_episodes",
)


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was asked for, or one the config does not fit."""


# -- the lock ----------------------------------------------------------------------------
class RunLock:
    """Exclusive use of a run folder (see the module doc).  A context manager."""

    NAME = ".lica.lock"

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / self.NAME
        self._file: Any = None

    def __enter__(self) -> RunLock:
        f = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise CheckpointError(
                f"run folder {self.path.parent} is in use by another lica run ({holder}). Wait for it to "
                "end, or give this run its own folder (another hydra.run.dir).") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()


# -- writing -----------------------------------------------------------------------------
class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and keeping the previous ``last.ckpt``
    (see the module doc).  A reader sees a complete old file or a complete new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if path.name == LAST and path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def check_writable(folder: Path) -> None:
    """Fail now, naming the folder, if checkpoints cannot be written there."""
    probe = folder / ".write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"lica")
        probe.unlink()
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoints to {folder} ({err.strerror or err}): give the run a writable folder "
            "(hydra.run.dir=...) or free that path.") from err


# -- reading -----------------------------------------------------------------------------
def read_checkpoint(path: Path) -> dict[str, Any]:
    """A lica checkpoint as a dict, or :class:`CheckpointError` saying why it is unusable."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is unreadable ({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "lica" not in ckpt:
        raise CheckpointError(f"{path} is not a lica checkpoint (no 'state_dict'/'lica' entries)")
    return ckpt


def load_resume_checkpoint(cfg: TrainConfig, ckpt_dir: Path) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """The checkpoint this run continues from, and its contents; ``(None, None)`` for a
    fresh run.  ``cfg.ckpt_path`` must be readable; with ``resume=true`` the run folder's
    ``last.ckpt`` is tried first, then ``last.prev.ckpt`` (with a warning saying why)."""
    if cfg.ckpt_path:
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise CheckpointError(f"ckpt_path={cfg.ckpt_path} does not exist: give the path of a .ckpt file")
        return path, read_checkpoint(path)
    if not cfg.resume:
        return None, None
    problems: list[str] = []
    for path in (ckpt_dir / LAST, ckpt_dir / PREVIOUS):
        if not path.exists():
            continue
        try:
            ckpt = read_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            log.warning("%s; resuming from the previous checkpoint %s instead", "; ".join(problems), path)
        return path, ckpt
    if problems:
        raise CheckpointError("; ".join(problems) + ". No readable checkpoint is left: start a new run in "
                              "another folder, or pass ckpt_path=<a good checkpoint>.")
    return None, None


# -- the config check --------------------------------------------------------------------
def _may_change(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in MAY_CHANGE_ON_RESUME)


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"<key>: checkpoint <a>, now <b>"`` for every learning-relevant setting that
    differs.  A setting the checkpoint does not record (added to lica after it was written)
    counts as equal when it holds the schema's default; one the current schema no longer
    has is ignored (it cannot be set any more)."""
    old, new = flatten(saved), flatten(current)
    defaults = schema_defaults(current["algo"]["name"])
    out = []
    for key in sorted(new):
        if _may_change(key):
            continue
        if key in old:
            if old[key] != new[key]:
                out.append(f"{key}: checkpoint {old[key]!r}, now {new[key]!r}")
        elif key not in defaults or defaults[key] != new[key]:
            out.append(f"{key}: not in the checkpoint, now {new[key]!r}")
    return out


def saved_config(ckpt: dict[str, Any]) -> Optional[TrainConfig]:
    """The config a checkpoint was trained with (None for checkpoints of older lica);
    settings added to lica since take their defaults."""
    saved = ckpt.get(CONFIG_KEY)
    return None if saved is None else train_config(saved)


def check_compatible(ckpt_path: Path, ckpt: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume ``ckpt`` with a config that would learn something else."""
    saved = ckpt.get(CONFIG_KEY)
    if saved is None:
        log.warning("%s holds no config (written by an older lica): the resumed config is not checked", ckpt_path)
        return
    diffs = config_differences(saved, current)
    if diffs:
        raise CheckpointError(
            f"resume refused: this config differs from the one {ckpt_path} was trained with in\n  - "
            + "\n  - ".join(diffs)
            + "\nResume with the run's own values for these (settings that may change on resume: "
            + ", ".join(MAY_CHANGE_ON_RESUME) + "), or start a new run in another folder. "
            "Nothing in the run folder was changed.")
