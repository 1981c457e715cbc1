"""Checkpoints hold everything: an interrupted and resumed run ends exactly where an
uninterrupted run of the same seed ends (CPU, in-process envs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lica.algos.lica import LICA
from lica.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
RUN = TINY + ["rollout.num_workers=0", "seed=5", "trainer.checkpoint_every_iters=7",
              "trainer.max_env_steps=2400", "algo.actor_input=gumbel"]  # gumbel: the global torch RNG matters too


def final_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def assert_same_training_state(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0, msg=k)
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"]):
        for pa, pb in zip(oa["state"].values(), ob["state"].values()):
            for key in pa:
                torch.testing.assert_close(pa[key], pb[key], rtol=0, atol=0)
    assert a["RolloutDataModule"]["env_steps"] == b["RolloutDataModule"]["env_steps"]
    assert a["lica"]["critic_steps"] == b["lica"]["critic_steps"]
    assert a["lica"]["test_history"] == b["lica"]["test_history"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(compose_config(RUN), run_dir=run_dir)
    return final_state(run_dir)


@pytest.mark.slow
def test_signal_saves_then_resume_matches_uninterrupted(tmp_path, monkeypatch, uninterrupted):
    calls = {"n": 0}
    original = LICA.update

    def update_then_sigterm(self, batch):
        out = original(self, batch)
        calls["n"] += 1
        if calls["n"] == 23:  # mid-run, between two periodic checkpoints
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(LICA, "update", update_then_sigterm)
    first = train(compose_config(RUN), run_dir=tmp_path)
    assert first["interrupted_by"] == "SIGTERM"
    assert final_state(tmp_path)["RolloutDataModule"]["env_steps"] == 23 * 40
    monkeypatch.setattr(LICA, "update", original)
    second = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert second["resumed_from"] and second["interrupted_by"] is None
    assert_same_training_state(final_state(tmp_path), uninterrupted)


@pytest.mark.slow
def test_killed_cli_run_resumes_from_periodic_checkpoint(tmp_path, uninterrupted):
    """SIGKILL (no chance to save): ``resume=true`` continues from the last periodic
    checkpoint and still ends bit-identical to the uninterrupted run."""
    cmd = [sys.executable, "-m", "lica.train", *RUN, f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert ckpt.exists(), proc.stderr.read().decode()[-2000:]
    steps_at_kill = torch.load(ckpt, weights_only=False)["RolloutDataModule"]["env_steps"]
    assert steps_at_kill < 2400, "the run must be killed before it finished"
    out = subprocess.run(cmd + ["resume=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from" in out.stdout
    assert_same_training_state(final_state(tmp_path), uninterrupted)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    summary = train(compose_config(TINY + ["rollout.num_workers=0", "resume=true", "trainer.max_env_steps=400"]),
                    run_dir=tmp_path)
    assert summary["resumed_from"] is None and summary["env_steps"] == 400
