"""Experiment loggers (Lightning's own) and the tags runs are compared by.

``logger=csv`` (default) writes ``<run dir>/csv/metrics.csv``; ``logger=wandb`` adds a
Weights & Biases run, ``logger=[csv,wandb]`` both; ``logger=tensorboard`` writes TensorBoard
event files to ``<run dir>/tensorboard/`` (env steps as TensorBoard's step).  The W&B run

* lives under the run folder (``<run dir>/wandb/``), one run per job of a multirun: it is
  finished when Lightning finalizes its loggers (end of ``fit``, success or failure), and a
  run a crashed earlier job left open in the same process is finished before a new one starts;
* is **offline** unless asked otherwise or an API key is configured
  (:func:`wandb_credentials_configured`: ``WANDB_API_KEY``, the key ``wandb login`` stored
  for wandb's own server URL, or wandb's settings; no network call, no hang).  An offline
  run prints the exact ``wandb sync <path>`` command that uploads it when it finishes.
  Online, a start that fails within ``init_timeout_s`` (a compute node without internet
  but with a shared ``~/.netrc``) falls back to offline with a warning instead of failing;
* is grouped by its variant (:mod:`lica.variants`): ``logger.wandb.group`` if set, else
  ``<label> [<variant id>]`` -- in a multirun the label the sweep gave the job (what
  differs across its jobs, the same as the end-of-sweep table), in a single run the
  run's description; the id hashes every learning-relevant setting, so the seeds of one
  variant, and only they, share a group;
* carries the comparison fields (:func:`lica.variants.run_tags`) as tags (``critic:mix``...)
  and as flat config keys (``critic``, ``entropy``, ``entropy_coef``, ``actor_input``,
  ``env_id`` = env label with the agent count, ``algo_name``, ``seed``, ``experiment``,
  ``variant`` = the group, ``variant_id``, ``variant_label``, and the paper's names
  ``critic_label`` = C_Mix | C_MLP | COMA, ``entropy_label`` = ξ=<coef> | β=<coef>) that
  dashboards group by (:mod:`lica.dashboard`);
* logs metrics as ``train/<name>`` and ``test/<name>`` (:func:`wandb_key`; the CSV keeps
  the plain names) against ``env_steps`` (``define_metric``), the x-axis of every figure
  in the paper;
* continues the same run id when a job resumes from a checkpoint: the id is read from
  ``checkpoint["lica"]["logger_run_ids"]["WandbLogger"]`` (:func:`checkpoint_logger_state`).
"""

from __future__ import annotations

import csv
import io
import os
import shlex
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.loggers import Logger
from pytorch_lightning.loggers import TensorBoardLogger as _LightningTensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from lica.callbacks import Evaluation
from lica.config import TrainConfig
from lica.sweep import current_job
from lica.variants import Variant, critic_label, describe, entropy_label, env_label, flatten, run_tags, variant_id

WANDB_MODES = ("online", "offline", "disabled")
WANDB_GROUP_MAX = 128  # characters W&B keeps of a group name


def build_loggers(cfg: TrainConfig, run_dir: Path, ckpt_path: str | Path | None = None) -> list[Logger]:
    """The loggers ``cfg.logger`` asks for.  ``ckpt_path``: the checkpoint the run resumes
    from (None: a fresh run), whose W&B run id, CSV rows and TensorBoard steps are continued."""
    run_dir = Path(run_dir)
    resumed = checkpoint_logger_state(ckpt_path) if ckpt_path else None
    keep_until = _keep_rows_until(resumed)
    loggers: list[Logger] = []
    if cfg.logger.csv is not None:
        loggers.append(CSVLogger(save_dir=str(run_dir), name=cfg.logger.csv.name, version="",
                                 resume_env_steps=keep_until,
                                 resume_test_rows=resumed["test_history"] if resumed else ()))
    if cfg.logger.wandb is not None:
        run_id = resumed["run_ids"].get("WandbLogger") if resumed else None
        loggers.append(build_wandb_logger(cfg, run_dir, run_id=run_id if run_id not in ("", "None") else None))
    if cfg.logger.tensorboard is not None:
        # a resumed run hides the events logged after its checkpoint (they are logged again)
        purge = {} if keep_until is None or keep_until == float("inf") else {"purge_step": int(keep_until) + 1}
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name=cfg.logger.tensorboard.name, version="",
                                         default_hp_metric=False, **purge))
    return loggers


# -- CSV -------------------------------------------------------------------------------
class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger`` (same class name), made durable:

    * ``metrics.csv`` is only ever appended to or replaced whole: when new columns appear,
      Lightning rewrites the file, here into a temporary file renamed over it, so a kill
      never leaves it half-written;
    * a resumed run keeps the rows written before its checkpoint (Lightning's deletes
      ``metrics.csv`` when the folder is reused), drops the rows past the checkpoint
      (logged before a crash, about to be logged again) and a last line a kill cut short,
      and adds back the evaluation rows the checkpoint's test history holds but the file
      lacks, so each env step appears once.

    Rows reach the disk when :meth:`save` is called; lica calls it after every training
    iteration (:class:`lica.callbacks.RunCheckpoints`)."""

    def __init__(self, *args: Any, resume_env_steps: float | None = None,
                 resume_test_rows: Sequence[dict[str, Any]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._resume_env_steps = resume_env_steps
        self._resume_test_rows = list(resume_test_rows)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _DurableExperimentWriter(self.log_dir, self._resume_env_steps, self._resume_test_rows)
        return self._experiment


class _DurableExperimentWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_until_env_steps: float | None, test_rows: list[dict[str, Any]]) -> None:
        self._keep_until = keep_until_env_steps
        self._test_rows = test_rows
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__
        if self._keep_until is None:  # a fresh run: Lightning's behaviour (start a new metrics.csv)
            super()._check_log_dir_exists()
            return
        header: list[str] = []
        rows: list[dict[str, Any]] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                text = f.read()
            if not text.endswith("\n"):  # a row cut short by a kill
                text = text[: text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text))
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if not r.get("env_steps") or float(r["env_steps"]) <= self._keep_until]
        tested = {float(r["env_steps"]) for r in rows if r.get("test_return_mean") and r.get("env_steps")}
        for entry in self._test_rows:
            if entry["env_steps"] <= self._keep_until and float(entry["env_steps"]) not in tested:
                rows.append({**entry, "env_steps": float(entry["env_steps"])})
                header += [k for k in entry if k not in header]
        if not header:  # nothing to keep (no file, or not even a header left)
            if self._fs.isfile(self.metrics_file_path):
                self._fs.rm_file(self.metrics_file_path)
            return
        rows.sort(key=lambda r: float(r.get("env_steps") or 0))
        self.metrics_keys = sorted(header)
        self._write_whole(rows)

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            rows = list(csv.DictReader(f))
        self._write_whole(rows, fieldnames)

    def _write_whole(self, rows: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
        """Replace ``metrics.csv`` with ``rows``: a temporary file renamed over it."""
        tmp = self.metrics_file_path + ".tmp"
        with self._fs.open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames or self.metrics_keys)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.metrics_file_path)


# -- TensorBoard -----------------------------------------------------------------------
class TensorBoardLogger(_LightningTensorBoardLogger):
    """Lightning's ``TensorBoardLogger`` with ``env_steps`` as TensorBoard's step (the
    x-axis of every figure in the paper)."""

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics, step=int(metrics["env_steps"]) if "env_steps" in metrics else step)


# -- W&B -------------------------------------------------------------------------------
def wandb_key(name: str) -> str:
    """The W&B name of a logged metric: ``test_<x>`` -> ``test/<x>``, ``train_<x>`` ->
    ``train/<x>``, other training metrics ``<x>`` -> ``train/<x>``; ``env_steps`` (the
    x-axis) stays.  The CSV keeps the plain names."""
    if name == "env_steps":
        return name
    for split in ("test", "train"):
        if name.startswith(split + "_"):
            return f"{split}/{name[len(split) + 1:]}"
    return f"train/{name}"


def wandb_sync_command(paths: Iterable[str | Path]) -> str:
    """``wandb sync <paths>`` for offline run folders ('' when there are none)."""
    paths = [shlex.quote(str(p)) for p in paths]
    return f"wandb sync {' '.join(paths)}" if paths else ""


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` (same class name, so checkpoints record its run id under
    ``logger_run_ids["WandbLogger"]``) that logs ``train/`` and ``test/`` metrics against
    ``env_steps``, finishes its W&B run when Lightning finalizes the loggers (so each job
    of a multirun is its own run) and, offline, prints the ``wandb sync`` command."""

    _finished = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb: warns even when None

    @property
    def experiment(self) -> Any:
        fresh = self._experiment is None
        try:
            run = super().experiment
        except Exception as err:  # online start failed (no network, server down): go on offline
            from wandb.errors import CommError

            if not (fresh and isinstance(err, CommError) and self._wandb_init.get("mode") == "online"):
                raise
            warnings.warn(f"W&B could not start online ({str(err)[:200]}); logging offline instead "
                          "(the `wandb sync` command is printed when the run ends)", stacklevel=2)
            self._wandb_init["mode"] = "offline"
            self._wandb_init.pop("settings", None)
            run = super().experiment
        if fresh and self._experiment is not None and hasattr(run, "define_metric"):
            run.define_metric("env_steps")
            run.define_metric("*", step_metric="env_steps", step_sync=True)
        return run

    def log_metrics(self, metrics: dict[str, Any], step: Optional[int] = None) -> None:
        super().log_metrics({wandb_key(k): v for k, v in metrics.items()}, step)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        self.finish(exit_code=1 if status == "failed" else 0)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the W&B run (idempotent; its id stays readable as :attr:`version`); an
        offline run prints the command that uploads it."""
        run = self._experiment
        if run is None or self._finished or not hasattr(run, "finish"):
            return
        self._finished = True
        offline = run.settings.mode == "offline"
        run.finish(exit_code=exit_code)
        if offline:
            print(f"lica: W&B run {run.id} logged offline; upload it with: "
                  f"{wandb_sync_command([run.settings.sync_dir])}", flush=True)


def build_wandb_logger(cfg: TrainConfig, run_dir: Path, run_id: str | None = None) -> WandbLogger:
    """A W&B logger writing under ``run_dir``; ``run_id`` continues that run (resume)."""
    wcfg = cfg.logger.wandb
    assert wcfg is not None
    finish_active_run()
    variant = wandb_variant(cfg)
    mode = wandb_mode(wcfg.mode)
    extra: dict[str, Any] = {}
    if mode == "online":
        import wandb

        extra["settings"] = wandb.Settings(init_timeout=wcfg.init_timeout_s)
    return WandbLogger(
        save_dir=str(run_dir),
        project=wcfg.project or os.environ.get("WANDB_PROJECT") or "lica",
        entity=wcfg.entity or os.environ.get("WANDB_ENTITY") or None,
        name=wcfg.name or f"{cfg.name} | {variant.label} | seed {cfg.seed}",
        id=run_id,
        group=wandb_group(cfg),
        job_type=wcfg.job_type,
        tags=[f"{k}:{v}"[:64] for k, v in run_tags(cfg).items()] + [f"variant:{variant.id}"] + list(wcfg.tags),
        config=wandb_run_config(cfg),
        mode=mode,
        **extra,
    )


def wandb_variant(cfg: TrainConfig) -> Variant:
    """The run's variant: in a job of a lica multirun the label the sweep planned for it
    (:func:`lica.sweep.current_job`), in a single run its description."""
    job = current_job()
    return Variant(id=variant_id(cfg), label=job.variant if job else describe(cfg), env=env_label(flatten(cfg)))


def wandb_group(cfg: TrainConfig) -> str:
    """``logger.wandb.group`` if set, else the variant: ``<label> [<variant id>]``."""
    if cfg.logger.wandb is not None and cfg.logger.wandb.group:
        return cfg.logger.wandb.group
    variant = wandb_variant(cfg)
    room = WANDB_GROUP_MAX - len(variant.id) - 3
    label = variant.label if len(variant.label) <= room else variant.label[:room - 1] + "…"
    return f"{label} [{variant.id}]"


def wandb_run_config(cfg: TrainConfig) -> dict[str, Any]:
    """Flat config keys W&B dashboards group and filter by (the full config is added by
    ``log_hyperparams``; ``env``/``algo`` there are dicts, hence ``env_id``/``algo_name``)."""
    tags = run_tags(cfg)
    s = flatten(cfg)
    variant = wandb_variant(cfg)
    return {"critic": tags["critic"], "entropy": tags["entropy"], "entropy_coef": tags["entropy_coef"],
            "actor_input": tags["actor_input"], "env_id": tags["env"], "algo_name": tags["algo"],
            "seed": tags["seed"], "experiment": cfg.name, "variant": wandb_group(cfg), "variant_id": variant.id,
            "variant_label": variant.label, "critic_label": critic_label(s), "entropy_label": entropy_label(s)}


def wandb_mode(mode: Optional[str]) -> str:
    """``logger.wandb.mode`` if set, else ``$WANDB_MODE``, else ``online`` when an API key
    is configured and ``offline`` otherwise.  Looks at files and variables only."""
    if mode is None:
        env = os.environ.get("WANDB_MODE", "").strip().lower()
        if os.environ.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
            env = "disabled"
        mode = {"dryrun": "offline", "run": "online"}.get(env, env) or (
            "online" if wandb_credentials_configured() else "offline")
    if mode not in WANDB_MODES:
        raise ValueError(f"logger.wandb.mode must be one of {', '.join(WANDB_MODES)} (or null), got {mode!r}")
    return mode


def wandb_credentials_configured() -> bool:
    """True when wandb has an API key for its server, found the way wandb itself finds
    one without prompting or a network call: ``WANDB_API_KEY``, the netrc entry ``wandb
    login`` wrote for wandb's server URL (``WANDB_BASE_URL`` or wandb's default, whatever
    host that is), or wandb's settings."""
    from wandb import env
    from wandb.sdk import wandb_setup
    from wandb.sdk.lib import wbauth

    if os.environ.get(env.API_KEY):
        return True
    settings = wandb_setup.singleton().settings
    base_url = os.environ.get(env.BASE_URL) or settings.base_url
    return bool(wbauth.read_netrc_auth(host=base_url) or settings.api_key)


# -- resume and clean-up ---------------------------------------------------------------
def checkpoint_logger_state(ckpt_path: str | Path) -> dict[str, Any] | None:
    """What the loggers of a run resumed from ``ckpt_path`` continue from:
    ``{"run_ids": checkpoint["lica"]["logger_run_ids"], "env_steps": <env steps done>,
    "test_history": <the evaluations it holds>}`` (None when the file does not exist)."""
    if not Path(ckpt_path).exists():
        return None
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    env_steps = ckpt.get("RolloutDataModule", {}).get("env_steps")
    return {"run_ids": dict(ckpt.get("lica", {}).get("logger_run_ids", {})), "env_steps": env_steps,
            "test_history": Evaluation.history_in(ckpt)}


def _keep_rows_until(resumed: dict[str, Any] | None) -> float | None:
    if resumed is None:
        return None  # a fresh run: Lightning's behaviour (start a new metrics.csv)
    return float("inf") if resumed["env_steps"] is None else float(resumed["env_steps"])


def finish_active_run() -> None:
    """Finish a W&B run still open in this process (one a crashed earlier job of a
    multirun left), so the next job does not silently log into it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        warnings.warn(f"finishing the W&B run {wandb.run.id} left open by an earlier job", stacklevel=2)
        wandb.run.finish(exit_code=1)
