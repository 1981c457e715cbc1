"""Training entry point: ``python -m lica.train [overrides]`` (console script ``lica-train``).

Hydra composes ``lica/conf/train.yaml``; :func:`train` takes the run folder (locked for the
run's lifetime), checks the config, picks and checks the checkpoint a resumed run
continues from, builds the run (:class:`lica.experiment.Experiment`: DataModule,
LightningModule of ``algo.name``, evaluation) with the loggers, checkpoint, stop-signal and
progress callbacks and a Lightning ``Trainer``, fits, reports how the run ended
and returns the run summary (``main`` returns the final greedy test return: what a
sweeper optimises).

Order of the first steps, so that a refused run changes nothing: lock the folder; write
Hydra's record of the config (``.hydra/``) only if the folder has none yet; validate;
choose the checkpoint and check the config against it; only then rewrite ``.hydra/`` of a
resumed run and let the loggers write ``csv/hparams.yaml``.  (``hydra.output_subdir`` is
null in ``lica/conf/train.yaml``: Hydra itself would write ``.hydra/`` before any check.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins.environments import SLURMEnvironment

from lica.callbacks import Evaluation, EnvStepProgressBar, PreemptionCheckpoint, ProgressLog, RunCheckpoints
from lica.config import TrainConfig, plain_config, register_configs, validate
from lica.envs import backend_module
from lica.experiment import Experiment
from lica.loggers import build_loggers, run_tags, wandb_group
from lica.resume import (LAST, PREVIOUS, AtomicCheckpointIO, CheckpointError, RunLock, check_compatible,
                         check_writable, load_resume_checkpoint, saved_config)

register_configs()
log = logging.getLogger("lica")
# Lightning's notes on choices made on purpose here: the dataloader_iter step (exactly
# on-policy batches), checkpoints after the iteration's updates, no srun for a single run;
# and torch's deprecation of a class Lightning still uses.
for _note in ("You are using the `dataloader_iter` step flavor", "Found `dataloader_iter` argument",
              "Using ModelCheckpoint with manual optimization", "The `srun` command is available",
              r"`isinstance\(treespec, LeafSpec\)` is deprecated"):
    warnings.filterwarnings("ignore", message=f".*{_note}")


class _DropNotes(logging.Filter):
    """Lightning's advert for its cloud logger, and its end-of-fit note (lica says itself
    how a run ended)."""

    NOTES = ("Tip: For seamless cloud logging", "`Trainer.fit` stopped: `max_epochs=")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(note in message for note in self.NOTES)


for _name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
              "lightning_utilities.core.rank_zero"):
    logging.getLogger(_name).addFilter(_DropNotes())

FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's default job logging format


@contextmanager
def run_logging(run_dir: Path) -> Iterator[None]:
    """lica's messages (the ``lica`` loggers, INFO and up) go to stdout and to
    ``<run dir>/train.log``.  Under Hydra its job logging does that already (console
    handler + ``<run dir>/<job name>.log``); a direct :func:`train` call gets handlers of its
    own for the run's duration (stdout only when nothing else prints INFO records)."""
    root, lica_log = logging.getLogger(), logging.getLogger("lica")
    train_log = (run_dir / "train.log").resolve()
    added: list[logging.Handler] = []
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve() == train_log
               for h in root.handlers):
        added.append(logging.FileHandler(train_log))
    if not root.handlers:
        added.append(logging.StreamHandler(sys.stdout))
    level = lica_log.level
    if lica_log.getEffectiveLevel() > logging.INFO:
        lica_log.setLevel(logging.INFO)
    for h in added:
        h.setFormatter(logging.Formatter(FORMAT))
        lica_log.addHandler(h)
    try:
        yield
    finally:
        for h in added:
            lica_log.removeHandler(h)
            h.close()
        lica_log.setLevel(level)


def write_hydra_record(run_dir: Path, dcfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml`` as Hydra writes them,
    when this is Hydra's job in its own output folder (else nothing)."""
    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if Path(hc.runtime.output_dir).resolve() != run_dir.resolve():
        return
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(dcfg))
    (out / "hydra.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": hc})))
    (out / "overrides.yaml").write_text(OmegaConf.to_yaml(hc.overrides.task))


def train(dcfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train once from a composed config; returns the run summary."""
    cfg: TrainConfig = OmegaConf.to_object(dcfg)
    run_dir = Path(run_dir or cfg.output_dir or HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(run_dir), run_logging(run_dir):
        had_record = (run_dir / ".hydra" / "config.yaml").exists()
        if not had_record:  # a new folder: recorded before the checks, as Hydra would
            write_hydra_record(run_dir, dcfg)
        validate(cfg)
        ckpt_dir = run_dir / "checkpoints"
        ckpt_path, ckpt = load_resume_checkpoint(cfg, ckpt_dir)
        if ckpt is None and ((ckpt_dir / LAST).exists() or (ckpt_dir / PREVIOUS).exists()):
            raise CheckpointError(
                f"run folder {run_dir} already holds a run ({ckpt_dir / LAST}): continue it with resume=true, "
                "or start this run in another folder (hydra.run.dir=...)")
        config = plain_config(dcfg)
        if ckpt is not None:
            check_compatible(ckpt_path, ckpt, config)
        check_writable(ckpt_dir)
        if had_record:
            write_hydra_record(run_dir, dcfg)
        if ckpt is not None and ckpt["RolloutDataModule"]["env_steps"] >= cfg.trainer.max_env_steps:
            return _already_done(cfg, run_dir, ckpt_path, ckpt)
        return _fit(cfg, dcfg, config, run_dir, ckpt_path, ckpt)


def _fit(cfg: TrainConfig, dcfg: DictConfig, config: dict[str, Any], run_dir: Path, ckpt_path: Path | None,
         ckpt: dict[str, Any] | None) -> dict[str, Any]:
    started = time.time()
    start_steps = ckpt["RolloutDataModule"]["env_steps"] if ckpt else 0
    experiment: Experiment | None = None
    checkpoints: RunCheckpoints | None = None
    try:
        experiment = Experiment(cfg)
        checkpoints = RunCheckpoints(run_dir / "checkpoints", cfg.trainer.checkpoint_every_iters, config,
                                     experiment.evaluation)
        preemption = PreemptionCheckpoint(checkpoints)
        trainer = _trainer(cfg, dcfg, experiment, run_dir, ckpt_path, ckpt, [checkpoints, preemption])
        if ckpt_path is not None:
            log.info("resuming from %s (%d env steps done, budget %d)", ckpt_path, start_steps,
                     cfg.trainer.max_env_steps)
        experiment.fit(trainer, ckpt_path)
        if preemption.received is None:
            checkpoints.save_last(trainer)
    except BaseException as err:
        env_steps = experiment.datamodule.env_steps if experiment else start_steps
        _log_failure(err, env_steps, start_steps, time.time() - started, checkpoints, ckpt_path)
        raise
    finally:
        if experiment is not None:
            experiment.close()

    dm, history = experiment.datamodule, experiment.evaluation.test_history
    elapsed = time.time() - started
    segment = dm.env_steps - start_steps
    ended = f"stopped by {preemption.received.name}" if preemption.received else "finished"
    summary = {
        "run_dir": str(run_dir), "env_steps": dm.env_steps, "wall_time_s": round(elapsed, 1),
        "segment_env_steps": segment, "env_steps_per_s": round(segment / max(elapsed, 1e-9), 1),
        "first_test": history[0] if history else None, "final_test": history[-1] if history else None,
        "best_test_return": checkpoints.best, "tags": run_tags(cfg), "env_info": dataclasses.asdict(dm.env_info),
        "resumed_from": str(ckpt_path) if ckpt_path else None, "ended": ended,
        "interrupted_by": preemption.received.name if preemption.received else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info(format_summary(summary))
    if preemption.received is not None:
        log.info("stopped by %s at %d env steps; checkpoint %s. Continue with: python -m lica.train <same "
                 "overrides> resume=true hydra.run.dir=%s", preemption.received.name, dm.env_steps,
                 checkpoints.last_path, run_dir)
        preemption.forward_signal()
    return summary


def _trainer(cfg: TrainConfig, dcfg: DictConfig, experiment: Experiment, run_dir: Path, ckpt_path: Path | None,
             ckpt: dict[str, Any] | None, callbacks: list[Any]) -> pl.Trainer:
    """The loggers (their hyper-parameters logged) and the run's Trainer, with the progress
    output that suits stdout (a bar in a terminal, else log lines)."""
    started_as = saved_config(ckpt) if ckpt else None
    if started_as is not None and cfg.logger.wandb is not None and not cfg.logger.wandb.group:
        # a resumed run stays in its W&B group when its budget or evaluation schedule changed
        cfg.logger.wandb.group = wandb_group(started_as)
    loggers = build_loggers(cfg, run_dir, ckpt_path=ckpt_path)
    hparams = {**plain_config(dcfg), "tags": run_tags(cfg)}
    install_info = getattr(backend_module(cfg.env), "install_info", None)
    if install_info is not None:  # e.g. the StarCraft II version of a SMAC run
        hparams["env_install"] = install_info()
    for lg in loggers:
        lg.log_hyperparams(hparams)
    bar = cfg.trainer.enable_progress_bar and sys.stdout.isatty()
    evaluation = experiment.evaluation
    progress = EnvStepProgressBar(evaluation) if bar else ProgressLog(cfg.trainer.log_every_s, evaluation)
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return experiment.trainer(run_dir, loggers, [*callbacks, progress], max_epochs=ckpt["epoch"] + 1 if ckpt else 1,
                              progress_bar=bar, plugins=plugins)


def _log_failure(err: BaseException, env_steps: int, start_steps: int, elapsed: float,
                 checkpoints: RunCheckpoints | None, ckpt_path: Path | None) -> None:
    how = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed ({type(err).__name__}: {err})"
    if checkpoints is not None and checkpoints.last_saved is not None:
        kept = (f"the last checkpoint {checkpoints.last_path} holds {checkpoints.last_saved[1]} env steps "
                "(continue with resume=true)")
    elif ckpt_path is not None:
        kept = f"no checkpoint was written since the resume from {ckpt_path} ({start_steps} env steps)"
    else:
        kept = "no checkpoint was written"
    segment = env_steps - start_steps
    log.error("== lica run %s at %d env steps (%d in this segment, %.1f env-steps/s); %s",
              how, env_steps, segment, segment / max(elapsed, 1e-9), kept)


def _already_done(cfg: TrainConfig, run_dir: Path, ckpt_path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """A resume whose budget is already spent: say so and change nothing."""
    steps = ckpt["RolloutDataModule"]["env_steps"]
    history = Evaluation.history_in(ckpt)
    log.info("== lica run already done: %s holds %d env steps, trainer.max_env_steps=%d; nothing to train. "
             "To train on, resume with a larger budget: resume=true trainer.max_env_steps=<more than %d>",
             ckpt_path, steps, cfg.trainer.max_env_steps, steps)
    return {"run_dir": str(run_dir), "env_steps": steps, "segment_env_steps": 0,
            "first_test": history[0] if history else None, "final_test": history[-1] if history else None,
            "tags": run_tags(cfg), "resumed_from": str(ckpt_path), "ended": "already done", "interrupted_by": None}


def format_summary(s: dict[str, Any]) -> str:
    first, final = s["first_test"] or {}, s["final_test"] or {}
    lines = [f"== lica run {s['ended']}: {s['env_steps']} env steps, {s['segment_env_steps']} of them in "
             f"{s['wall_time_s']} s of this segment ({s['env_steps_per_s']} env-steps/s incl. evaluation)"]
    for key in sorted(k for k in final if k.startswith("test_")):
        lines.append(f"   {key}: first {first.get(key, float('nan')):.3f} (at {first.get('env_steps', 0)} steps)"
                     f" -> final {final[key]:.3f} (at {final.get('env_steps', 0)} steps)")
    lines.append(f"   files: {s['run_dir']} (csv/metrics.csv, checkpoints/last.ckpt, checkpoints/best.ckpt, "
                 "summary.json, train.log)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    summary = train(cfg)
    if summary["interrupted_by"]:
        raise SystemExit(128 + signal.Signals[summary["interrupted_by"]].value)
    return float((summary["final_test"] or {}).get("test_return_mean", float("nan")))


if __name__ == "__main__":
    main()
