"""Training entry point: ``python -m lica.train [overrides]`` (console script ``lica-train``).

Hydra composes ``conf/train.yaml``; :func:`train` builds the rollout DataModule, the
LightningModule named by ``algo.name``, the loggers and a Lightning ``Trainer``, fits,
prints a summary and returns the final greedy test return (what a sweeper optimises).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.environments import SLURMEnvironment

from lica.algos import build_module
from lica.callbacks import PreemptionCheckpoint
from lica.config import TrainConfig, register_configs, validate
from lica.envs import backend_module
from lica.loggers import build_loggers, run_tags
from lica.rollout.datamodule import RolloutDataModule

register_configs()
# Lightning's notes on choices made on purpose here: the dataloader_iter step (exactly
# on-policy batches), checkpoints after the iteration's updates, no srun for a single run.
for _note in ("You are using the `dataloader_iter` step flavor", "Found `dataloader_iter` argument",
              "Using ModelCheckpoint with manual optimization", "The `srun` command is available"):
    warnings.filterwarnings("ignore", message=f".*{_note}")


def resume_checkpoint(cfg: TrainConfig, last: Path) -> str | None:
    """The checkpoint a run resumes from: ``cfg.ckpt_path``, else (with ``resume=true``)
    the run folder's ``checkpoints/last.ckpt`` if it exists, else None (a fresh run)."""
    if cfg.ckpt_path:
        return cfg.ckpt_path
    return str(last) if cfg.resume and last.exists() else None


def train(dcfg: DictConfig, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train once from a composed config; returns the run summary."""
    cfg: TrainConfig = OmegaConf.to_object(dcfg)
    validate(cfg)
    run_dir = Path(run_dir or cfg.output_dir or hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_num_threads(cfg.trainer.torch_threads)

    dm = RolloutDataModule(cfg.env, cfg.rollout, cfg.seed, cfg.trainer.max_env_steps)
    module = build_module(cfg.algo, dm.env_info, cfg.rollout.eval_interval)
    ckpt_dir = run_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    ckpt_path = resume_checkpoint(cfg, last)
    loggers = build_loggers(cfg, run_dir, ckpt_path=ckpt_path)
    hparams = {**OmegaConf.to_container(dcfg, resolve=True), "tags": run_tags(cfg)}
    install_info = getattr(backend_module(cfg.env), "install_info", None)
    if install_info is not None:  # e.g. the StarCraft II version of a SMAC run
        hparams["env_install"] = install_info()
    for lg in loggers:
        lg.log_hyperparams(hparams)
    # Lightning counts optimiser steps: each iteration steps the critic and the actor once
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                 every_n_train_steps=2 * cfg.trainer.checkpoint_every_iters)
    preemption = PreemptionCheckpoint(last)
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, max_epochs=1,
        logger=loggers or False, callbacks=[checkpoint, preemption], log_every_n_steps=1,
        enable_progress_bar=cfg.trainer.enable_progress_bar, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), plugins=plugins,
    )
    if ckpt_path is not None:
        print(f"lica: resuming from {ckpt_path}")
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    finally:
        dm.teardown("fit")
    if preemption.received is None:
        trainer.save_checkpoint(last)

    history = module.test_history
    elapsed = time.time() - started
    summary = {
        "run_dir": str(run_dir), "env_steps": dm.env_steps, "wall_time_s": round(elapsed, 1),
        "env_steps_per_s": round(dm.env_steps / max(elapsed, 1e-9), 1),
        "first_test": history[0] if history else None, "final_test": history[-1] if history else None,
        "tags": run_tags(cfg), "env_info": dataclasses.asdict(dm.env_info), "resumed_from": ckpt_path,
        "interrupted_by": preemption.received.name if preemption.received else None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    if preemption.received is not None:
        print(f"lica: stopped by {preemption.received.name} at {dm.env_steps} env steps; checkpoint "
              f"{last}. Continue with: python -m lica.train <same overrides> resume=true "
              f"hydra.run.dir={run_dir}")
        preemption.forward_signal()
    return summary


def print_summary(s: dict[str, Any]) -> None:
    first, final = s["first_test"] or {}, s["final_test"] or {}
    print(f"\n== lica run finished: {s['env_steps']} env steps in {s['wall_time_s']} s "
          f"({s['env_steps_per_s']} env-steps/s incl. evaluation)")
    for key in sorted(k for k in final if k.startswith("test_")):
        print(f"   {key}: first {first.get(key, float('nan')):.3f} (at {first.get('env_steps', 0)} steps)"
              f" -> final {final[key]:.3f} (at {final.get('env_steps', 0)} steps)")
    print(f"   files: {s['run_dir']} (csv/metrics.csv, checkpoints/last.ckpt, summary.json)")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    summary = train(cfg)
    if summary["interrupted_by"]:
        raise SystemExit(128 + signal.Signals[summary["interrupted_by"]].value)
    return float((summary["final_test"] or {}).get("test_return_mean", float("nan")))


if __name__ == "__main__":
    main()
