"""The bundled SLURM test cluster and Hydra's submitit launcher on it.

Needs root and Debian (the ``slurm_cluster`` fixture installs and starts the cluster,
or skips). Run: ``python -m pytest tests/test_slurm_cluster.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

# A minimal Hydra app: multirun through hydra-submitit-launcher with the repo's
# lica/conf/launcher/slurm_test.yaml; prints every job's return value as JSON lines.
APP = '''
import json, os, socket, sys, time

from hydra._internal.hydra import Hydra
from hydra.core.global_hydra import GlobalHydra


def task(cfg):
    if cfg.fail_on is not None and cfg.x == cfg.fail_on:
        raise RuntimeError(f"lica-test-failure in job x={{cfg.x}}")
    if cfg.die_on is not None and cfg.x == cfg.die_on:
        os._exit(3)  # dies hard: no result for submitit, only sacct can tell
    return {{"x": cfg.x, "y": cfg.x * 10, "job_id": os.environ.get("SLURM_JOB_ID"),
            "host": socket.gethostname()}}


if __name__ == "__main__":
    hydra = Hydra.create_main_hydra_file_or_module(
        calling_file=__file__, calling_module=None, config_path="conf", job_name="app")
    t0 = time.time()
    try:
        returns = hydra.multirun(config_name="config", task_function=task,
                                 overrides=sys.argv[1:], with_log_configuration=True)
    finally:
        GlobalHydra.instance().clear()
    for batch in returns:
        for r in batch:
            print("RETURN " + json.dumps(r.return_value), flush=True)
    print(f"MULTIRUN_SECONDS {{time.time() - t0:.2f}}", flush=True)
'''

CONFIG = """
defaults:
  - launcher: slurm_test   # the repo's lica/conf/launcher/slurm_test.yaml
  - _self_
x: 0
fail_on: null
die_on: null
hydra:
  searchpath:
    - file://{conf}
  job:
    chdir: false
  sweep:
    dir: {sweep}
    subdir: ${{hydra.job.num}}
"""


def _write_app(tmp_path: Path) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format()))
    (tmp_path / "conf" / "config.yaml").write_text(
        CONFIG.format(conf=REPO / "lica" / "conf", sweep=tmp_path / "multirun")
    )
    return tmp_path / "app.py"


def _run_app(cluster, tmp_path: Path, *overrides: str, timeout: float):
    import subprocess

    app = _write_app(tmp_path)
    return subprocess.run(
        [sys.executable, str(app), *overrides],
        cwd=tmp_path,
        env=cluster.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _returns(stdout: str) -> list[dict]:
    return [json.loads(line[len("RETURN ") :]) for line in stdout.splitlines() if line.startswith("RETURN ")]


def _sacct_state(cluster, job_id: str, timeout: float = 30) -> str:
    """The job's state in the accounting database, once it has one that is final."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = cluster.run("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "State").stdout.split()
        state = out[0] if out else ""
        if state and state not in ("PENDING", "RUNNING", "COMPLETING"):
            return state
        time.sleep(0.5)
    return state


@dataclass
class ClosedCheckoutMunge:
    """The munge dir made (as up.sh does) for a state dir under a 0700 folder, after the munge
    user wrote its log there."""

    closed: Path  # the 0700 folder holding the checkout
    proc: subprocess.CompletedProcess  # the shell that made the dir
    munge_dir: Path | None
    env: dict  # the environment naming that state dir


@pytest.fixture
def closed_checkout_munge(tmp_path):
    closed = tmp_path / "closed"
    (closed / "repo").mkdir(parents=True)
    closed.chmod(0o700)
    script = 'source slurm/common.sh && make_munge_dir && runuser -u munge -- touch "$MUNGE_DIR/munged.log" && echo "$MUNGE_DIR"'
    env = {**os.environ, "LICA_SLURM_DIR": str(closed / "repo" / ".slurm")}
    proc = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    munge_dir = Path(proc.stdout.strip()) if proc.stdout.strip() else None
    yield ClosedCheckoutMunge(closed, proc, munge_dir, env)
    if munge_dir is not None and munge_dir.is_relative_to("/run/lica-munge"):
        shutil.rmtree(munge_dir, ignore_errors=True)


@pytest.mark.timeout(60)
def test_down_removes_the_munge_dir_it_put_under_run(slurm_cluster, closed_checkout_munge):
    """The /run fallback lies outside the state dir: down.sh removes it, so no checkout leaves
    a munge key behind under /run."""
    m = closed_checkout_munge
    assert m.proc.returncode == 0 and m.munge_dir.is_relative_to("/run/lica-munge"), m.proc.stdout + m.proc.stderr
    assert (m.munge_dir / "munged.log").exists()
    down = subprocess.run(["bash", "slurm/down.sh"], cwd=REPO, env=m.env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not m.munge_dir.exists()


@pytest.mark.timeout(60)
def test_munge_dir_is_reachable_for_a_checkout_in_a_closed_folder(slurm_cluster, closed_checkout_munge):
    """A checkout under a 0700 folder (``mktemp -d``): munged, running as the munge user, must
    still be able to write its log and socket, so up.sh puts them where that user can reach."""
    m = closed_checkout_munge
    assert m.proc.returncode == 0, m.proc.stdout + m.proc.stderr
    assert not m.munge_dir.is_relative_to(m.closed) and (m.munge_dir / "munged.log").exists()
    assert len(str(m.munge_dir / "munge.socket.2")) < 100  # a unix socket path


@pytest.mark.timeout(120)
def test_sbatch_job_completes_and_is_accounted(slurm_cluster, tmp_path):
    out = tmp_path / "job.out"
    proc = slurm_cluster.run(
        "sbatch", "--parsable", "--wait", f"--output={out}", f"--partition={slurm_cluster.partition}",
        "--wrap", "echo hello from $SLURM_JOB_ID", timeout=90,
    )
    job_id = proc.stdout.strip().split(";")[0]
    assert job_id.isdigit(), proc.stdout + proc.stderr
    assert out.read_text().strip() == f"hello from {job_id}"
    assert _sacct_state(slurm_cluster, job_id) == "COMPLETED"


@pytest.mark.timeout(180)
def test_hydra_multirun_returns_values(slurm_cluster, tmp_path):
    proc = _run_app(slurm_cluster, tmp_path, "x=1,2", timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    returns = sorted(_returns(proc.stdout), key=lambda r: r["x"])
    assert [(r["x"], r["y"]) for r in returns] == [(1, 10), (2, 20)]
    job_ids = {r["job_id"] for r in returns}
    assert all(job_ids) and len(job_ids) == 2, returns  # two array tasks, not one process
    for r in returns:  # the array tasks are in the accounting database too
        assert _sacct_state(slurm_cluster, r["job_id"]) == "COMPLETED"


@pytest.mark.timeout(180)
def test_hydra_multirun_fails_with_job_error(slurm_cluster, tmp_path):
    t0 = time.monotonic()
    proc = _run_app(slurm_cluster, tmp_path, "x=1,2", "fail_on=2", timeout=150)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0, proc.stdout
    assert "lica-test-failure in job x=2" in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 120


@pytest.mark.timeout(240)
def test_hydra_multirun_fails_when_job_dies_hard(slurm_cluster, tmp_path):
    # No result pickle: submitit only learns from sacct that the job is over.
    t0 = time.monotonic()
    proc = _run_app(slurm_cluster, tmp_path, "x=1", "die_on=1", timeout=200)
    elapsed = time.monotonic() - t0
    assert proc.returncode != 0, proc.stdout
    assert "has not produced any output" in proc.stderr or "FAILED" in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 180
