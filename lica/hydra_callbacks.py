"""Hydra callbacks (``hydra.callbacks`` in ``lica/conf/train.yaml``).

:class:`VariantTable`

* at the end of every job: a job whose task raised has its traceback logged to the job's
  own log (``<job dir>/<task name>.log``; under SLURM also its stderr file), and the job's
  W&B run is finished if it is still open, so the next job of the sweep starts its own run;
* at the end of a multirun: the sweep's report, printed and written beside the runs --
  one row per variant (:mod:`lica.variants`: labelled by what differs) with its finished
  seeds, its failed ones, and the final ``metric`` across seeds as median [25th, 75th
  percentile], mean [95 % bootstrap CI] and IQM [95 % bootstrap CI] (:mod:`lica.stats`),
  as text (``variants.txt``), CSV (``variants.csv``) and Markdown (``variants.md``);
  then every failed job with the last lines of its error and the log that holds the
  traceback, and the ``wandb sync`` command for offline W&B runs.

lica's sweeper calls ``on_multirun_end`` itself before it exits non-zero when jobs
failed (``hydra_plugins/lica_sweeper``); with ``hydra.sweeper.plan_only=true`` nothing
ran and no report is made.
"""

from __future__ import annotations

import csv
import logging
import math
import traceback
from pathlib import Path
from typing import Any, Sequence

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lica.runs import RunRecord, RunsError, by_variant, load_runs
from lica.stats import FIELDS, summarize
from lica.sweep import failure_lines, read_jobs
from lica.variants import common_description

log = logging.getLogger("lica")


class VariantTable(Callback):
    def __init__(self, metric: str = "test_return_mean", filename: str = "variants.txt") -> None:
        self.metric = metric
        self.filename = filename

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        failed = getattr(getattr(job_return, "status", None), "name", "") == "FAILED"
        if failed:
            err = job_return._return_value  # JobReturn.return_value would raise it
            log.error("lica job failed:\n%s", "".join(traceback.format_exception(err)).rstrip())
        try:
            import wandb
        except ImportError:
            return
        if wandb.run is not None:
            wandb.run.finish(exit_code=1 if failed else 0)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper.get("plan_only", False):
            return
        print(self.report(Path(str(config.hydra.sweep.dir))), flush=True)

    def report(self, folder: Path) -> str:
        """The report for ``folder`` (also written to ``folder/<filename>``, ``.csv`` and
        ``.md``); never raises on a sweep that produced nothing: it says what is wrong."""
        try:
            runs = load_runs(folder)
        except RunsError as err:
            return f"\n== lica multirun {folder}: no variant table ({err})"
        rows = variant_rows(runs, self.metric)
        configs = [r.config for r in runs if r.config is not None]
        head = (f"== lica multirun {folder}: {len(runs)} jobs, {len(rows)} variants"
                + (f" of {common_description(configs)}" if configs else ""))
        lines = [head, f"final {self.metric} across seeds: median [25th, 75th percentile], "
                       "mean [95% bootstrap CI], IQM [95% bootstrap CI]", format_table(rows)]
        failures = failure_lines(read_jobs(folder) or [])
        if failures:
            lines += [f"FAILED jobs ({sum(1 for r in runs if r.status == 'failed')}):", *failures]
        stem = Path(self.filename).stem
        lines.append(f"   table: {folder / self.filename} (also {stem}.csv, {stem}.md); "
                     f"figures: python -m lica.plot {folder}")
        sync = _wandb_sync(folder)
        if sync:
            lines.append(f"   W&B offline runs, to upload: {sync}")
        text = "\n".join(lines)
        try:
            (folder / self.filename).write_text(text + "\n")
            write_csv(folder / f"{stem}.csv", rows)
            (folder / f"{stem}.md").write_text(format_markdown(rows, head) + "\n")
        except OSError as err:
            text += f"\n   (could not write the table files: {err})"
        return "\n" + text


def variant_rows(runs: Sequence[RunRecord], metric: str) -> list[dict[str, Any]]:
    """One row per variant: label, id, env, finished seeds, seeds that failed or did not
    finish, and :func:`lica.stats.summarize` of the finished seeds' final ``metric``."""
    rows = []
    for members in by_variant(runs).values():
        done = [m for m in members if m.status == "finished"]
        v = members[0].variant
        rows.append({"variant": v.label, "variant_id": v.id, "env": v.env, "seeds": len(done),
                     "failed": len(members) - len(done), "metric": metric,
                     **summarize([m.final(metric) for m in done])})
    return rows


def _num(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def _cells(row: dict[str, Any]) -> list[str]:
    return [row["variant"], str(row["seeds"]), str(row["failed"]),
            f"{_num(row['median'])} [{_num(row['q1'])}, {_num(row['q3'])}]",
            f"{_num(row['mean'])} [{_num(row['mean_ci_low'])}, {_num(row['mean_ci_high'])}]",
            f"{_num(row['iqm'])} [{_num(row['iqm_ci_low'])}, {_num(row['iqm_ci_high'])}]"]


HEADER = ["variant", "seeds", "failed", "median [IQR]", "mean [95% CI]", "IQM [95% CI]"]


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs)"
    cells = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(HEADER)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join(line(r) for r in [HEADER, ["-" * w for w in widths], *cells])


def format_markdown(rows: Sequence[dict[str, Any]], title: str) -> str:
    lines = [f"{title.removeprefix('== ')}", "", "| " + " | ".join(HEADER) + " |",
             "|" + "|".join(" --- " for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    cols = ["variant", "variant_id", "env", "seeds", "failed", "metric", *FIELDS]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)


def _wandb_sync(folder: Path) -> str:
    from lica.loggers import wandb_sync_command

    return wandb_sync_command(sorted(folder.glob("*/wandb/offline-run-*")))
