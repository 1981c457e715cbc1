"""lica sweeps on the real bundled SLURM cluster (started by the ``slurm_cluster`` fixture):
a 2x2 grid as one job array, a failing task, a cancelled task, and requeue-and-resume on
preemption."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lica.sweep import read_jobs
from tests.conftest import TINY

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
# The scheduler's side is under test here, not learning: the reference configuration (one critic
# step per batch) keeps each job's training short.
SWEEP = [*TINY, "rollout.num_workers=0", "launcher=slurm_test", "algo=lica_reference"]


def multirun(cluster, sweep_dir: Path, *overrides: str, timeout: float = 300, wait: bool = True):
    cmd = [sys.executable, "-m", "lica.train", "-m", *SWEEP, *overrides, f"hydra.sweep.dir={sweep_dir}"]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=timeout)


def test_two_by_two_grid_runs_as_one_job_array(slurm_cluster, tmp_path):
    started = time.time()
    out = multirun(slurm_cluster, tmp_path, "seed=1,2", "algo.critic=mix,mlp")
    assert out.returncode == 0, out.stderr[-4000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    variants = set()
    for job in jobs:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        variants.add((cfg.seed, cfg.algo.critic))
        assert (job / "csv" / "metrics.csv").exists() and (job / "checkpoints" / "last.ckpt").exists()
        assert json.loads((job / "summary.json").read_text())["env_steps"] == 1600
    assert variants == {(1, "mix"), (1, "mlp"), (2, "mix"), (2, "mlp")}
    array_ids = {p.name.split("_")[0] for p in (tmp_path / ".submitit").iterdir() if p.name[0].isdigit()}
    assert len(array_ids) == 1, f"expected one job array, got {array_ids}"
    array_id = array_ids.pop()
    for _ in range(50):  # accounting lags the job's end by a moment
        acct = slurm_cluster.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", array_id)
        states = [line.split("|")[1] for line in acct.stdout.split()]
        if states == ["COMPLETED"] * 4:
            break
        time.sleep(0.2)
    assert states == ["COMPLETED"] * 4, acct.stdout
    print(f"2x2 grid on SLURM: {time.time() - started:.1f} s wall")


def sacct_states(cluster, array_id: str, n: int) -> dict[str, str]:
    """``{task id: "STATE exit code"}`` of a job array, once all ``n`` tasks are accounted as ended."""
    for _ in range(50):  # accounting lags the job's end by a moment
        acct = cluster.run("sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode", "-j", array_id)
        states = {line.split("|")[0]: " ".join(line.split("|")[1:]) for line in acct.stdout.split()}
        if len(states) == n and not any(s.startswith(("RUNNING", "PENDING", "COMPLETING")) for s in states.values()):
            return states
        time.sleep(0.2)
    return states


def test_failing_task_is_failed_in_sacct_and_reported_and_fails_the_sweep(slurm_cluster, tmp_path):
    """One task of two raises (3 workers cannot split the batch of 4 episodes): SLURM
    accounts it FAILED with its traceback in its own log, the report names it with its
    error next to the table of the other, and the sweep exits non-zero."""
    started = time.time()
    cmd = [sys.executable, "-m", "lica.train", "-m", *TINY, "launcher=slurm_test", "seed=0",
           "rollout.num_workers=0,3", f"hydra.sweep.dir={tmp_path}"]
    out = subprocess.run(cmd, cwd=ROOT, env=slurm_cluster.env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "lica multirun: 1 of 2 jobs failed (job 1" in out.stderr
    (array_id,) = {p.name.split("_")[0] for p in (tmp_path / ".submitit").iterdir() if p.name[0].isdigit()}
    assert sacct_states(slurm_cluster, array_id, 2) == {f"{array_id}_0": "COMPLETED 0:0", f"{array_id}_1": "FAILED 1:0"}
    err_log = tmp_path / ".submitit" / f"{array_id}_1" / f"{array_id}_1_0_log.err"
    log_text = err_log.read_text()
    assert "Traceback" in log_text and "rollout.num_workers=3 must divide rollout.batch_episodes=4" in log_text
    assert "completed successfully" not in log_text + err_log.with_name(f"{array_id}_1_0_log.out").read_text()
    report = out.stdout[out.stdout.index("== lica multirun"):]
    rows = [line.split() for line in report.splitlines() if line.startswith("LICA")]
    assert len(rows) == 1 and rows[0][4:6] == ["1", "1"]  # one variant (workers are execution-only): 1 seed, 1 failed
    failures = report[report.index("FAILED jobs (1):"):]
    assert "job 1 (" in failures and "launcher=slurm_test" in failures and "rollout.num_workers=3" in failures
    assert "ValueError: Invalid lica config" in failures and "must divide rollout.batch_episodes=4" in failures
    assert f"log: {err_log}" in failures
    assert [r.status for r in read_jobs(tmp_path)] == ["COMPLETED", "FAILED"]
    print(f"sweep with a failing task on SLURM: {time.time() - started:.1f} s wall")


def test_sweep_waits_for_the_other_tasks_when_one_is_cancelled(slurm_cluster, tmp_path):
    """scancel of one running task: the sweep still waits for the other to finish, then
    reports the cancelled one as failed and exits non-zero.  The cancelled task's budget is one
    it cannot finish; the other's outlasts the time submitit takes to see the cancel in
    ``sacct`` (its polling backs off to half the time since submission), or it would end first."""
    proc = multirun(slurm_cluster, tmp_path, "trainer.max_env_steps=2000000,40000",
                    "trainer.checkpoint_every_iters=1000", wait=False)
    deadline = time.time() + 180  # both tasks started (Hydra wrote their configs): cancel the first
    while time.time() < deadline and not all((tmp_path / j / ".hydra" / "config.yaml").exists() for j in "01"):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    (array_id,) = {p.name.split("_")[0] for p in (tmp_path / ".submitit").iterdir() if p.name[0].isdigit()}
    slurm_cluster.run("scancel", f"{array_id}_0")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr[-3000:]
    # the other task ran to its end before the sweep returned
    assert json.loads((tmp_path / "1" / "summary.json").read_text())["env_steps"] == 40000
    assert f"waiting for 1 more: {array_id}_1" in stdout + stderr
    states = sacct_states(slurm_cluster, array_id, 2)
    assert states[f"{array_id}_0"].startswith("CANCELLED") and states[f"{array_id}_1"] == "COMPLETED 0:0"
    report = stdout[stdout.index("== lica multirun"):]
    assert "FAILED jobs (1):" in report and "job 0 (" in report and "CANCELLED" in report
    assert [r.status for r in read_jobs(tmp_path)] == ["FAILED", "COMPLETED"]


PROGRESS = re.compile(r"\[lica.progress\]\[INFO\] - [\d,]+/40,000 env steps \(\d+\.\d %\), [\d,]+ env-steps/s, ETA ")


def job_output(sweep_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit").rglob("*_log.out")))


def test_preempted_job_saves_requeues_and_resumes(slurm_cluster, tmp_path):
    """Also: the job's .out shows progress lines while it runs."""
    proc = multirun(slurm_cluster, tmp_path, "seed=7", "trainer.max_env_steps=40000",
                    "trainer.checkpoint_every_iters=1000", "trainer.log_every_s=1", wait=False)
    ckpt_dir = tmp_path / "0" / "checkpoints"
    deadline = time.time() + 180
    # wait until the job is training and its .out shows progress, then preempt it
    while time.time() < deadline and len(PROGRESS.findall(job_output(tmp_path))) < 2:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.5)
    assert len(PROGRESS.findall(job_output(tmp_path))) >= 2, job_output(tmp_path)[-3000:]
    assert not (tmp_path / "0" / "summary.json").exists()  # still running
    job_ids = [p.name for p in (tmp_path / ".submitit").iterdir() if p.name[0].isdigit()]
    assert job_ids, "no submitit job folder"
    job = job_ids[0].split("_")[0]
    slurm_cluster.run("scancel", "--signal=USR2", job)
    # the requeued job waits the credential lifetime (cred_expire=10 s in slurm.conf.in)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-4000:]
    summary = json.loads((tmp_path / "0" / "summary.json").read_text())
    assert summary["resumed_from"] == str(ckpt_dir / "last.ckpt")
    assert summary["env_steps"] == 40000
    saved = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert saved["RolloutDataModule"]["env_steps"] == 40000
    log = "\n".join(p.read_text() for p in (tmp_path / ".submitit").rglob("*_log.err"))
    assert "preempted" in log or "USR2" in log
