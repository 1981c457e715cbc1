"""lica sweeps on the real bundled SLURM cluster (started by the ``slurm_cluster`` fixture):
a 2x2 grid as one job array, a crashing job, and requeue-and-resume on preemption."""

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

from tests.conftest import TINY

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
SWEEP = [*TINY, "rollout.num_workers=0", "launcher=slurm_test"]


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


def test_crashing_job_fails_the_sweep_with_its_error(slurm_cluster, tmp_path):
    started = time.time()
    out = multirun(slurm_cluster, tmp_path, "env.scenario=spread,no_such_task", timeout=240)
    assert out.returncode != 0
    assert "Unknown mpe scenario 'no_such_task'" in out.stderr
    assert time.time() - started < 240


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
