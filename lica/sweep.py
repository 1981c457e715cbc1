"""The jobs of a multirun: plan, outcome and where their errors are.

lica's Hydra sweeper (``hydra_plugins/lica_sweeper``, selected in ``lica/conf/train.yaml``)
expands a multirun exactly as Hydra's basic sweeper does, then, before launching anything,
composes every job's config and gives each job its variant (:func:`lica.variants.assign`
over all jobs of the sweep).  That plan is written to ``<sweep dir>/jobs.json`` (one
:class:`JobRecord` per job) and, with ``hydra.sweeper.plan_only=true``, printed instead of
launched (:func:`format_plan`).  After the launcher returns, each record gets its outcome:
``COMPLETED`` or ``FAILED`` with the last lines of its error and the log that holds the
whole traceback (:func:`record_results`).  The end-of-sweep report
(:mod:`lica.hydra_callbacks`), :mod:`lica.plot` and the W&B group of each job
(:mod:`lica.loggers`) read this file.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from lica.variants import Variant, assign

JOBS_FILE = "jobs.json"
ERROR_LINES = 3  # lines of a failed job's error shown in the report


@dataclass
class JobRecord:
    """One job of a multirun."""

    num: int
    overrides: list[str]
    variant: str  # label: what differs across the sweep's jobs
    variant_id: str
    env: str
    working_dir: str
    status: str = "PLANNED"  # PLANNED | COMPLETED | FAILED
    error: Optional[str] = None  # the last lines of the error
    log: Optional[str] = None  # the file that holds the whole traceback

    @property
    def as_variant(self) -> Variant:
        return Variant(id=self.variant_id, label=self.variant, env=self.env)


class JobFailed(RuntimeError):
    """A job that failed outside the submitting process: the last lines of its error;
    ``log`` holds the whole traceback."""

    def __init__(self, message: str, log: str | None) -> None:
        super().__init__(message)
        self.log = log


def plan(jobs: Sequence[Sequence[str]], configs: Sequence[Any], working_dirs: Sequence[str]) -> list[JobRecord]:
    """A record per job (``jobs[i]``: its overrides; ``configs[i]``: its composed task config)."""
    variants = assign(configs)
    return [JobRecord(num=i, overrides=list(o), variant=v.label, variant_id=v.id, env=v.env, working_dir=str(d))
            for i, (o, v, d) in enumerate(zip(jobs, variants, working_dirs))]


def format_plan(records: Sequence[JobRecord], sweep_dir: str, launcher: str) -> str:
    """The dry run's listing: every job with its overrides and variant, then the total."""
    lines = [f"lica multirun plan ({launcher}, nothing submitted): {sweep_dir}"]
    width = max(len(str(r.num)) for r in records)
    for r in records:
        lines.append(f"  #{r.num:<{width}}  {' '.join(r.overrides) or '(no overrides)'}   -> {r.variant}")
    variants = {r.variant_id for r in records}
    lines.append(f"total: {len(records)} jobs, {len(variants)} variants")
    return "\n".join(lines)


def write_jobs(sweep_dir: str | Path, records: Iterable[JobRecord]) -> Path:
    """Write ``<sweep dir>/jobs.json`` (atomically: jobs may read it while it is rewritten)."""
    path = Path(sweep_dir) / JOBS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"jobs": [asdict(r) for r in records]}, indent=1, ensure_ascii=False))
    os.replace(tmp, path)
    return path


def read_jobs(sweep_dir: str | Path) -> list[JobRecord] | None:
    """The records of ``<sweep dir>/jobs.json``; None where there is none (not a lica sweep)."""
    path = Path(sweep_dir) / JOBS_FILE
    if not path.is_file():
        return None
    return [JobRecord(**j) for j in json.loads(path.read_text())["jobs"]]


def current_job() -> JobRecord | None:
    """Inside a job of a lica multirun, its record (None in a single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    records = read_jobs(hc.sweep.dir) or []
    return next((r for r in records if r.num == hc.job.num), None)


def record_results(records: Sequence[JobRecord], first: int, results: Sequence[Any]) -> None:
    """Fill in the outcome of jobs ``first, first+1, ...`` from the launcher's ``JobReturn``s."""
    for record, ret in zip(records[first:], results):
        if ret.status.name == "COMPLETED":
            record.status = "COMPLETED"
            continue
        err = ret._return_value  # JobReturn.return_value re-raises it
        record.status = "FAILED"
        if isinstance(err, JobFailed):
            record.error, record.log = str(err), err.log
        else:  # ran in this process (basic launcher): the job's own log has the traceback
            record.error = last_lines("".join(traceback.format_exception(err)))
            record.log = str(Path(record.working_dir) / f"{ret.task_name}.log")  # Hydra's job log


def last_lines(text: str, n: int = ERROR_LINES) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and set(line.strip()) != {"-"}]
    return "\n".join(lines[-n:])


def collect_submitit(jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], log: Any) -> list[Any]:
    """Wait for every submitit job (a requeued job is waited for too), then one ``JobReturn``
    per job: the job's own, or a FAILED one whose error is a :class:`JobFailed` naming
    the job's stderr file."""
    import submitit

    pending = {j.job_id for j in jobs}
    for job in submitit.helpers.as_completed(jobs, poll_frequency=1):
        pending.discard(job.job_id)
        if pending:
            log.info(f"job {job.job_id} ended ({job.state}); waiting for {len(pending)} more: "
                     f"{', '.join(sorted(pending))}")
    results = []
    for job, overrides in zip(jobs, job_overrides):
        try:
            results.append(job.results()[0])
        except submitit.core.utils.FailedJobError as err:  # raised in the job: submitit quotes the traceback
            error = last_lines(str(err).split("You can check full logs")[0])
            results.append(_failed(overrides, error, job))
        except submitit.core.utils.UncompletedJobError:  # killed, cancelled, timed out: no result
            stderr = job.stderr() or ""
            error = f"job {job.job_id} ended {job.state} without a result" + (
                f"; its stderr ends:\n{last_lines(stderr, ERROR_LINES - 1)}" if stderr.strip() else "")
            results.append(_failed(overrides, error, job))
    return results


def _failed(overrides: Sequence[str], error: str, job: Any) -> Any:
    from hydra.core.utils import JobReturn, JobStatus

    return JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                     _return_value=JobFailed(error, log=str(job.paths.stderr)))


def failure_lines(records: Sequence[JobRecord]) -> list[str]:
    """The report's list of failed jobs: overrides, variant, error's last lines, log path."""
    lines = []
    for r in records:
        if r.status != "FAILED":
            continue
        lines.append(f"  job {r.num} ({' '.join(r.overrides)}) -- variant {r.variant}")
        lines += [f"      {line}" for line in (r.error or "(no error text)").splitlines()]
        lines.append(f"      log: {r.log or '(none)'}")
    return lines
