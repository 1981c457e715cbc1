"""The runs of a multirun folder as the comparison tools see them.

:func:`load_runs` finds every job folder under a multirun folder (or takes one run
folder), with its composed config, its ``csv/metrics.csv`` rows, its variant
(:mod:`lica.variants`, over all runs of the folder) and its status:

* ``finished``: ``summary.json`` written and not interrupted;
* ``failed``: the sweep recorded it FAILED (``jobs.json``, :mod:`lica.sweep`), with the
  last lines of its error and its log;
* ``unfinished``: anything else (still running, killed, interrupted and not resumed).

When the folder holds the sweep's ``jobs.json``, variants and statuses are the recorded
ones (so the figures, the table and the W&B groups agree), and a job that failed before
writing anything still appears; run folders under it that are not jobs of the sweep (seeds
added later by single runs) are loaded too, in the recorded variant with the same settings.
Only finished runs enter statistics and figures; the others are listed as excluded.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lica.sweep import read_jobs
from lica.variants import Variant, assign, run_config, variant_id


class RunsError(ValueError):
    """A folder whose runs cannot be compared as asked (the message says why)."""


@dataclass
class RunRecord:
    """One job of a multirun: folder, config, variant, status and logged rows."""

    path: Path
    config: Optional[dict[str, Any]]  # None: a job that failed before writing its config
    variant: Variant
    status: str  # finished | failed | unfinished
    rows: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    log: Optional[str] = None

    @property
    def seed(self) -> Any:
        return (self.config or {}).get("seed")

    @property
    def metrics(self) -> set[str]:
        """Columns with at least one value in this run."""
        return {k for row in self.rows for k, v in row.items() if v not in ("", None)}

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of ``metric``, sorted by env step; a step logged twice
        (a resumed run) keeps its last value."""
        points: dict[float, float] = {}
        for row in self.rows:
            value, step = row.get(metric), row.get("env_steps")
            if value not in ("", None) and step not in ("", None):
                points[float(step)] = float(value)
        steps = np.array(sorted(points), dtype=float)
        return steps, np.array([points[s] for s in steps], dtype=float)

    def final(self, metric: str) -> float:
        """The last logged value of ``metric`` (NaN if never logged)."""
        _, values = self.series(metric)
        return float(values[-1]) if len(values) else float("nan")

    def describe_exclusion(self) -> str:
        why = {"failed": "failed", "unfinished": "did not finish (no summary.json: running, killed or interrupted)"}
        text = f"{self.path} ({self.variant.label}, seed {self.seed}): {why.get(self.status, self.status)}"
        if self.error:
            text += f": {self.error.splitlines()[-1]}"
        return text


def find_run_dirs(folder: str | Path) -> list[Path]:
    """Run folders under ``folder`` (or ``folder`` itself): those holding
    ``.hydra/config.yaml`` or ``<logger name>/metrics.csv``, in job-number order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunsError(f"{folder} is not a folder (expected a multirun folder such as "
                        "outputs/multiruns/<date>/<time>_<name>)")
    found = [p.parent.parent for p in folder.rglob("metrics.csv")] + \
            [p.parent.parent for p in folder.rglob(".hydra/config.yaml")]
    dirs = {d for d in found if "wandb" not in d.parts and ".submitit" not in d.parts}
    return sorted(dirs, key=_natural_key)


def load_runs(folder: str | Path) -> list[RunRecord]:
    """Every run under ``folder`` (see the module docstring)."""
    folder = Path(folder)
    records = (read_jobs(folder) if folder.is_dir() else None) or []
    dirs = [Path(r.working_dir) for r in records]
    recorded = {d.resolve() for d in dirs}
    extra = [d for d in find_run_dirs(folder) if d.resolve() not in recorded]
    if not dirs + extra:
        raise RunsError(f"no runs found under {folder}: expected one folder per job holding .hydra/config.yaml "
                        "and csv/metrics.csv (a multirun folder such as outputs/multiruns/<date>/<time>_<name>)")
    configs = [_config(d, required=False) for d in dirs] + [_config(d, required=True) for d in extra]
    variants = [r.as_variant for r in records] + _extra_variants(records, configs)
    dirs += extra
    runs = []
    for i, (run_dir, config, variant) in enumerate(zip(dirs, configs, variants)):
        summary_file = run_dir / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        status = "finished" if summary and not summary.get("interrupted_by") else "unfinished"
        run = RunRecord(path=run_dir, config=config, variant=variant, status=status, rows=_rows(run_dir),
                        summary=summary)
        if i < len(records) and records[i].status == "FAILED":
            run.status, run.error, run.log = "failed", records[i].error, records[i].log
        runs.append(run)
    return runs


def _extra_variants(records: Sequence[Any], configs: Sequence[Optional[dict[str, Any]]]) -> list[Variant]:
    """Variants of the run folders after the sweep's jobs (``configs[len(records):]``; seeds
    added to the folder by single runs, say): the variant of a recorded job with the same
    settings (compared as lica compares them now), otherwise their own (labelled by what
    differs among them)."""
    extra = configs[len(records):]
    known = {variant_id(c): r.as_variant for r, c in zip(records, configs) if c is not None}
    own = assign(extra) if extra else []
    return [known.get(variant_id(c), v) for c, v in zip(extra, own)]


def _config(run_dir: Path, required: bool) -> Optional[dict[str, Any]]:
    try:
        return run_config(run_dir)
    except FileNotFoundError as err:
        if required:
            raise RunsError(str(err)) from None
        return None


def _rows(run_dir: Path) -> list[dict[str, str]]:
    files = sorted(run_dir.glob("*/metrics.csv"))
    if not files:
        return []
    with files[0].open(newline="") as f:
        return list(csv.DictReader(f))


def finished(runs: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.status == "finished"]


def check_metric(runs: Sequence[RunRecord], metric: str) -> None:
    """Fail, naming the runs, when some finished runs did not log ``metric``."""
    runs = finished(runs)
    if not runs:
        raise RunsError("no run finished: nothing to compare")
    missing = [r for r in runs if metric not in r.metrics]
    if not missing:
        return
    common = sorted(set.intersection(*(r.metrics for r in runs)) - {"env_steps", "step"})
    if len(missing) == len(runs):
        raise RunsError(f"no run logged {metric!r}; metrics every run logged: {', '.join(common)}")
    raise RunsError(
        f"the runs logged different metrics: {metric!r} is missing in {len(missing)} of {len(runs)} runs "
        f"({', '.join(str(r.path) for r in missing)}); metrics every run logged: {', '.join(common)}")


def by_variant(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs per variant id, in the order variants first appear."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.variant.id, []).append(run)
    return groups


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]
