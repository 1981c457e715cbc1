"""Checkpoints hold everything: an interrupted and resumed run ends exactly where an
uninterrupted run of the same seed ends (CPU, in-process envs); metrics survive a hard
kill; one latest checkpoint file, with a fallback when it is damaged; a resume is checked
against the checkpoint's config; a run folder serves one run at a time."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lica.algos.lica import LICA
from lica.callbacks import Evaluation
from lica.loggers import CSVLogger
from lica.resume import CheckpointError, config_differences
from lica.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
RUN = TINY + ["rollout.num_workers=0", "seed=5", "trainer.checkpoint_every_iters=7",
              "trainer.max_env_steps=2400", "algo.actor_input=gumbel"]  # gumbel: the global torch RNG matters too


def final_state(run_dir: Path, name: str = "last.ckpt") -> dict:
    return torch.load(run_dir / "checkpoints" / name, weights_only=False)


def read_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


def assert_rows_match_checkpoint(rows: list[dict[str, str]], ckpt: dict) -> None:
    """One training row per iteration and one test row per evaluation the checkpoint
    knows, each env step once."""
    train_steps = [float(r["env_steps"]) for r in rows if r.get("critic_loss")]
    assert len(train_steps) == ckpt["RolloutDataModule"]["batches"] and len(set(train_steps)) == len(train_steps)
    tested = [(float(r["env_steps"]), float(r["test_return_mean"])) for r in rows if r.get("test_return_mean")]
    assert tested == [(h["env_steps"], h["test_return_mean"]) for h in Evaluation.history_in(ckpt)]


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
    assert Evaluation.history_in(a) == Evaluation.history_in(b)


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
    assert first["interrupted_by"] == "SIGTERM" and first["ended"] == "stopped by SIGTERM"
    assert final_state(tmp_path)["RolloutDataModule"]["env_steps"] == 23 * 40
    monkeypatch.setattr(LICA, "update", original)
    second = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert second["resumed_from"] and second["interrupted_by"] is None and second["ended"] == "finished"
    # the rate of this segment counts only the steps done after the resume
    assert second["segment_env_steps"] == 2400 - 23 * 40
    assert second["env_steps_per_s"] == pytest.approx(second["segment_env_steps"] / second["wall_time_s"], rel=0.05)
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    assert_rows_match_checkpoint(read_rows(tmp_path), final_state(tmp_path))


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
    at_kill = torch.load(ckpt, weights_only=False)
    steps_at_kill = at_kill["RolloutDataModule"]["env_steps"]
    assert steps_at_kill < 2400, "the run must be killed before it finished"
    # every row the checkpoint covers reached the disk before the kill
    rows = read_rows(tmp_path)
    assert_rows_match_checkpoint([r for r in rows if float(r["env_steps"]) <= steps_at_kill], at_kill)
    out = subprocess.run(cmd + ["resume=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from" in out.stdout
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    assert_rows_match_checkpoint(read_rows(tmp_path), final_state(tmp_path))  # no duplicates, nothing lost


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    summary = train(compose_config(TINY + ["rollout.num_workers=0", "resume=true", "trainer.max_env_steps=400"]),
                    run_dir=tmp_path)
    assert summary["resumed_from"] is None and summary["env_steps"] == 400


def crash_at(n: int):
    """LICA.update raising on its ``n``-th call (a crash mid-run)."""
    original, calls = LICA.update, {"n": 0}

    def update(self, batch):
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError("simulated crash")
        return original(self, batch)

    return update


@pytest.mark.slow
def test_preempted_then_crashed_run_resumes_from_its_latest_checkpoint(tmp_path, monkeypatch, uninterrupted, caplog):
    """The stop-signal save and the periodic saves write the same last.ckpt (no
    last-v1.ckpt), so a crash after a resume does not send the next resume back to the
    signal's checkpoint; the previous one is kept as last.prev.ckpt."""
    original = LICA.update

    def sigterm_at_5(self, batch):
        out = original(self, batch)
        if self.trainer.datamodule.batches == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(LICA, "update", sigterm_at_5)
    train(compose_config(RUN), run_dir=tmp_path)
    assert final_state(tmp_path)["RolloutDataModule"]["env_steps"] == 5 * 40
    monkeypatch.setattr(LICA, "update", crash_at(12))  # iteration 17: after the periodic saves at 7 and 14
    with caplog.at_level(logging.INFO, logger="lica"), pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt", "last.prev.ckpt"]
    assert final_state(tmp_path)["RolloutDataModule"]["env_steps"] == 14 * 40
    assert final_state(tmp_path, "last.prev.ckpt")["RolloutDataModule"]["env_steps"] == 7 * 40
    assert "lica run failed (RuntimeError: simulated crash) at 680 env steps (480 in this segment" in caplog.text
    assert "holds 560 env steps" in caplog.text
    monkeypatch.setattr(LICA, "update", original)
    third = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert third["resumed_from"] == str(tmp_path / "checkpoints" / "last.ckpt") and third["segment_env_steps"] == 2400 - 560
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    assert_rows_match_checkpoint(read_rows(tmp_path), final_state(tmp_path))


@pytest.mark.slow
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, uninterrupted, caplog):
    train(compose_config(RUN + ["trainer.max_env_steps=1200"]), run_dir=tmp_path)  # last: 1200, prev: 7 x 4 x 40
    last, prev = tmp_path / "checkpoints" / "last.ckpt", tmp_path / "checkpoints" / "last.prev.ckpt"
    assert final_state(tmp_path, "last.prev.ckpt")["RolloutDataModule"]["env_steps"] == 28 * 40
    last.write_bytes(last.read_bytes()[:100_000])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING, logger="lica"):
        resumed = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert f"{last} is unreadable" in caplog.text and f"resuming from the previous checkpoint {prev}" in caplog.text
    assert resumed["resumed_from"] == str(prev) and resumed["segment_env_steps"] == 2400 - 28 * 40
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    for path in (last, prev):
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="No readable checkpoint is left"):
        train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)


@pytest.mark.slow
def test_extending_the_budget_continues_and_restores_lost_rows(tmp_path, uninterrupted):
    """A finished run resumed with a larger budget trains on, exactly as if the budget had
    been the larger one from the start; evaluation rows the checkpoint knows but the CSV
    file lost come back."""
    first = train(compose_config(RUN + ["trainer.max_env_steps=1600"]), run_dir=tmp_path)
    assert first["env_steps"] == 1600
    again = train(compose_config(RUN + ["trainer.max_env_steps=1600", "resume=true"]), run_dir=tmp_path)
    assert again["ended"] == "already done" and again["segment_env_steps"] == 0
    (tmp_path / "csv" / "metrics.csv").unlink()
    second = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)  # trainer.max_env_steps=2400
    assert second["env_steps"] == 2400 and second["segment_env_steps"] == 800
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    rows = read_rows(tmp_path)
    tested = [float(r["env_steps"]) for r in rows if r.get("test_return_mean")]
    assert tested == [h["env_steps"] for h in Evaluation.history_in(uninterrupted)]
    assert [r["step"] for r in rows if r.get("test_return_mean")][:2] == ["0", "20"]  # restored with their steps


@pytest.mark.slow
def test_checkpoint_of_lica_before_the_evaluation_callback_resumes(tmp_path, uninterrupted):
    """Checkpoints written before the evaluation schedule moved from the module into
    lica.callbacks.Evaluation keep it under checkpoint["lica"]; they resume the same way."""
    train(compose_config(RUN + ["trainer.max_env_steps=1600"]), run_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = final_state(tmp_path)
    ckpt["lica"].update(ckpt["callbacks"].pop("Evaluation"))  # the older layout
    torch.save(ckpt, last)
    assert len(Evaluation.history_in(final_state(tmp_path))) == 3
    second = train(compose_config(RUN + ["resume=true"]), run_dir=tmp_path)
    assert second["first_test"]["env_steps"] == 0 and second["segment_env_steps"] == 800
    assert_same_training_state(final_state(tmp_path), uninterrupted)
    assert_rows_match_checkpoint(read_rows(tmp_path), final_state(tmp_path))


def test_refused_resume_names_the_differing_settings(tmp_path):
    train(compose_config(TINY + ["rollout.num_workers=0", "trainer.max_env_steps=400"]), run_dir=tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("train.log", ".lica.lock")}
    with pytest.raises(CheckpointError) as err:
        train(compose_config(TINY + ["rollout.num_workers=0", "resume=true", "env=spread5"]), run_dir=tmp_path)
    assert "env.n_agents: checkpoint 3, now 5" in str(err.value) and "algo.entropy_coef" in str(err.value)
    assert {p: p.read_bytes() for p in before} == before
    # a fresh run must not take over a folder that holds a run
    with pytest.raises(CheckpointError, match="already holds a run.*resume=true"):
        train(compose_config(TINY + ["rollout.num_workers=0"]), run_dir=tmp_path)


def test_config_differences_ignore_settings_that_may_change():
    saved = {"seed": 0, "trainer": {"max_env_steps": 100, "log_every_s": 30.0},
             "algo": {"name": "lica", "actor_lr": 0.1}}
    assert config_differences(saved, {**saved, "trainer": {"max_env_steps": 900, "log_every_s": 1.0}}) == []
    assert config_differences(saved, {**saved, "seed": 1, "algo": {"name": "lica", "actor_lr": 0.2}}) == [
        "algo.actor_lr: checkpoint 0.1, now 0.2", "seed: checkpoint 0, now 1"]
    # a setting lica gained after the checkpoint was written: fine at its algorithm's default only
    assert config_differences(saved, {**saved, "algo": {"name": "lica", "actor_lr": 0.1, "critic_replay": 0}}) == []
    assert config_differences(saved, {**saved, "algo": {"name": "lica", "actor_lr": 0.1, "critic_replay": 2}}) == [
        "algo.critic_replay: not in the checkpoint, now 2"]


def test_progress_output_settings_do_not_change_the_variant():
    """Seeds of a variant share a W&B group whatever their progress output."""
    from omegaconf import OmegaConf

    from lica.variants import variant_id

    def variant(*overrides: str) -> str:
        return variant_id(OmegaConf.to_object(compose_config(list(overrides))))

    assert variant("trainer.log_every_s=1") == variant() != variant("algo.actor_lr=0.1")


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the checkpoint folder should be")
    with pytest.raises(Exception, match="cannot write checkpoints to .*checkpoints"):
        train(compose_config(TINY + ["rollout.num_workers=0", "trainer.max_env_steps=400"]), run_dir=tmp_path)
    assert not (tmp_path / "csv").exists()  # nothing trained


def test_resumed_csv_drops_a_row_cut_short_and_rows_past_the_checkpoint(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(
        "env_steps,step,test_return_mean\r\n0.0,0,1.0\r\n400.0,10,\r\n800.0,20,3.0\r\n1200.0,30,4.0\r\n1600.0,4")
    history = [{"env_steps": 0, "step": 0, "test_return_mean": 1.0}, {"env_steps": 800, "step": 20, "test_return_mean": 3.0}]
    logger = CSVLogger(save_dir=str(tmp_path), name="csv", version="", resume_env_steps=1200.0,
                       resume_test_rows=history)
    logger.log_metrics({"env_steps": 1240.0, "critic_loss": 0.5}, step=31)
    logger.save()
    rows = read_rows(tmp_path)
    assert [(r["env_steps"], r["test_return_mean"]) for r in rows] == [
        ("0.0", "1.0"), ("400.0", ""), ("800.0", "3.0"), ("1200.0", "4.0"), ("1240.0", "")]


@pytest.mark.slow
def test_changed_config_is_refused_before_anything_is_written_cli(tmp_path):
    """Through the CLI: Hydra's record (.hydra/) and csv/hparams.yaml of the run stay as
    they were when a resume is refused; an accepted resume (larger budget, other
    evaluation schedule) continues and records its config."""
    run = [sys.executable, "-m", "lica.train", *TINY, "rollout.num_workers=0", "trainer.max_env_steps=400",
           f"hydra.run.dir={tmp_path}"]
    assert subprocess.run(run, cwd=ROOT, capture_output=True, timeout=300).returncode == 0
    kept = [tmp_path / ".hydra" / "config.yaml", tmp_path / ".hydra" / "overrides.yaml", tmp_path / "csv" / "hparams.yaml",
            tmp_path / "csv" / "metrics.csv", tmp_path / "checkpoints" / "last.ckpt", tmp_path / "summary.json"]
    before = [p.read_bytes() for p in kept]
    out = subprocess.run(run + ["resume=true", "algo.actor_lr=0.002", "seed=1"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "algo.actor_lr: checkpoint 0.001, now 0.002" in out.stderr and "seed: checkpoint 0, now 1" in out.stderr
    assert [p.read_bytes() for p in kept] == before
    out = subprocess.run(run + ["resume=true", "trainer.max_env_steps=800", "rollout.eval_interval=400"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "max_env_steps: 800" in (tmp_path / ".hydra" / "config.yaml").read_text()
    assert final_state(tmp_path)["RolloutDataModule"]["env_steps"] == 800


@pytest.mark.slow
def test_second_run_on_a_busy_folder_fails_fast(tmp_path):
    first = subprocess.Popen([sys.executable, "-m", "lica.train", *TINY, "rollout.num_workers=0",
                              "trainer.max_env_steps=400000", f"hydra.run.dir={tmp_path}"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "csv" / "metrics.csv").exists():
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            time.sleep(0.2)
        record = (tmp_path / ".hydra" / "config.yaml").read_bytes()
        started = time.time()
        second = subprocess.run([sys.executable, "-m", "lica.train", *TINY, "rollout.num_workers=0", "seed=9",
                                 "trainer.max_env_steps=400", f"hydra.run.dir={tmp_path}"],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert f"is in use by another lica run (pid {first.pid} on" in second.stderr
        assert time.time() - started < 60
        assert (tmp_path / ".hydra" / "config.yaml").read_bytes() == record
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM  # saved and stopped
    steps = [float(r["env_steps"]) for r in read_rows(tmp_path)]
    assert steps == sorted(steps)  # one writer: rows in order
