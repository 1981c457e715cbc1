"""End to end through Hydra composition and the real Lightning Trainer on mpe2."""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from lica.callbacks import Evaluation
from lica.config import validate
from lica.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_end_to_end_run_produces_metrics_and_checkpoint(tmp_path, workers):
    cfg = compose_config(TINY + [f"rollout.num_workers={workers}"])
    summary = train(cfg, run_dir=tmp_path)
    rows = read_metrics(tmp_path)
    train_rows = [r for r in rows if r.get("critic_loss")]
    test_rows = [r for r in rows if r.get("test_return_mean")]
    assert len(train_rows) == 1600 // (4 * 10)  # budget / (episodes per batch x steps per episode)
    assert [float(r["env_steps"]) for r in test_rows] == [0.0, 800.0, 1600.0]
    for key in ("critic_loss", "td_error_abs", "q_taken_mean", "policy_entropy", "critic_grad_norm",
                "actor_grad_norm", "env_steps", "train_return_mean"):
        assert train_rows[-1][key] != "", key
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert {"actor.fc1.weight", "critic.hyper_w1.0.weight", "target_critic.hyper_w1.0.weight"} <= set(ckpt["state_dict"])
    assert len(ckpt["optimizer_states"]) == 2
    assert ckpt["RolloutDataModule"]["env_steps"] == 1600
    assert {"critic_steps", "rng", "logger_run_ids"} <= set(ckpt["lica"])
    assert {"next_eval_at", "test_history"} <= set(ckpt["callbacks"]["Evaluation"])  # lica.callbacks.Evaluation
    assert summary["env_steps"] == 1600 and summary["final_test"]["env_steps"] == 1600
    assert (tmp_path / "summary.json").exists()
    # best.ckpt: the parameters of the best evaluation after an update (not the untrained one at 0)
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=False)
    after_updates = [h for h in Evaluation.history_in(ckpt) if h["env_steps"] > 0]
    top = max(after_updates, key=lambda h: h["test_return_mean"])
    assert Evaluation.history_in(best)[-1] == top and best["RolloutDataModule"]["env_steps"] == top["env_steps"]
    assert summary["best_test_return"] == top["test_return_mean"]


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = compose_config(TINY + ["rollout.num_workers=0", "seed=3"])
        train(cfg, run_dir=tmp_path / name)
        runs.append([{k: v for k, v in r.items()} for r in read_metrics(tmp_path / name)])
    assert runs[0] == runs[1]
    other = compose_config(TINY + ["rollout.num_workers=0", "seed=4"])
    train(other, run_dir=tmp_path / "c")
    assert read_metrics(tmp_path / "c") != runs[0]


@pytest.mark.slow
def test_collection_is_on_policy(tmp_path, monkeypatch):
    """Each batch is collected after the previous update, with the updated actor."""
    from lica.rollout.datamodule import RolloutDataModule

    seen: list[torch.Tensor] = []
    original = RolloutDataModule.collect

    def spy(self, policy):
        seen.append(policy.fc2.weight.detach().clone())
        return original(self, policy)

    updated: list[torch.Tensor] = []
    from lica.algos.lica import LICA

    orig_update = LICA.update

    def spy_update(self, batch):
        out = orig_update(self, batch)
        updated.append(self.actor.fc2.weight.detach().clone())
        return out

    monkeypatch.setattr(RolloutDataModule, "collect", spy)
    monkeypatch.setattr(LICA, "update", spy_update)
    train(compose_config(TINY + ["rollout.num_workers=0"]), run_dir=tmp_path)
    assert len(seen) == len(updated) == 40
    for before_next, after_prev in zip(seen[1:], updated[:-1]):
        torch.testing.assert_close(before_next, after_prev, rtol=0, atol=0)
    assert not torch.equal(seen[0], seen[1])


def test_config_typo_fails_at_compose():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config(["algo.entropy_coeff=0.2"])
    assert "entropy_coeff" in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_at_compose():
    with pytest.raises((ConfigCompositionException, ValidationError)) as err:
        compose_config(["algo.gamma=high"])
    assert "gamma" in str(err.value) + str(err.value.__cause__)


def test_unknown_group_option_fails_at_compose():
    with pytest.raises(ConfigCompositionException, match="env"):
        compose_config(["env=sprad"])


@pytest.mark.parametrize("override,match", [
    ("algo.entropy_coef=-0.1", "entropy_coef"), ("rollout.batch_episodes=0", "batch_episodes"),
    ("rollout.num_workers=3", "must divide"), ("algo.td_lambda=1.5", "td_lambda"),
    ("env.n_agents=0", r"env.n_agents must be >= 1 \(or null"), ("env.n_agents=-2", "env.n_agents must be >= 1"),
    ("env.episode_limit=0", r"env.episode_limit must be >= 1 env step \(or null"),
    ("seed=-1", r"seed must lie in \[0, 4294967295\]"), ("seed=4294967296", "seed must lie in"),
    ("trainer.torch_threads=0", "trainer.torch_threads must be >= 1"),
    ("trainer.devices=2", "trainer.devices must be 1, got 2: lica learns in one process"),
    ("trainer.accelerator=tpux", "trainer.accelerator must be one of cpu, gpu, cuda, auto"),
    ("trainer.log_every_s=0", "trainer.log_every_s must be > 0"),
    ("rollout.worker_timeout_s=0", "rollout.worker_timeout_s must be > 0 seconds"),
    ("rollout.test_num_workers=-1", "rollout.test_num_workers must be >= 0"),
    ("rollout.start_method=bogus", "rollout.start_method must be one of .*spawn.*got 'bogus'"),
    ("algo.value_layers=0", "algo.value_layers must be >= 1"), ("algo.value_width=0", "algo.value_width must be >= 1"),
])
def test_impossible_settings_are_rejected(override, match):
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_object(compose_config([override]))
    with pytest.raises(ValueError, match=match):
        validate(cfg)


def test_mpe_sizes_are_used_as_given_or_rejected():
    from omegaconf import OmegaConf

    from lica.envs.mpe import make_env

    env_cfg = OmegaConf.to_object(compose_config()).env
    for n_agents, limit, expected in ((None, None, (3, 25)), (2, 7, (2, 7))):
        env_cfg.n_agents, env_cfg.episode_limit = n_agents, limit
        info = make_env(env_cfg).get_env_info()
        assert (info.n_agents, info.episode_limit) == expected
    for n_agents, limit, match in ((0, 25, "n_agents >= 1"), (3, 0, "episode_limit must be >= 1")):
        env_cfg.n_agents, env_cfg.episode_limit = n_agents, limit
        with pytest.raises(ValueError, match=match):
            make_env(env_cfg)


def test_a_failed_run_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lica"), pytest.raises(ValueError, match="Unknown mpe scenario"):
        train(compose_config(TINY + ["rollout.num_workers=0", "env.scenario=nowhere"]), run_dir=tmp_path)
    assert ("== lica run failed (ValueError: Unknown mpe scenario 'nowhere'" in caplog.text
            and "at 0 env steps (0 in this segment" in caplog.text and "no checkpoint was written" in caplog.text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_accelerator_without_a_gpu_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match="trainer.accelerator=gpu but torch .* finds no CUDA GPU.*accelerator=cpu"):
        train(compose_config(TINY + ["trainer.accelerator=gpu"]), run_dir=tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_default_config_is_lica_on_spread():
    cfg = compose_config()
    assert (cfg.env.backend, cfg.env.scenario, cfg.env.n_agents) == ("mpe", "spread", 3)
    assert (cfg.algo.name, cfg.algo.critic, cfg.algo.entropy, cfg.algo.actor_input) == ("lica", "mix", "adaptive", "probs")
    assert cfg.rollout.batch_episodes == 32
    assert cfg.algo.entropy_coef == 0.1  # the paper's xi for Cooperative Navigation n=3


PROGRESS_LINE = re.compile(r"\[lica.progress\]\[INFO\] - [\d,]+/1,600 env steps \(\d+\.\d %\), [\d,]+ env-steps/s, "
                           r"ETA \d+:\d\d, last test return -?\d+\.\d\d \(at [\d,]+\)")


@pytest.mark.slow
def test_cli_entry_point_writes_into_outputs(tmp_path):
    """Without a terminal: progress lines on stdout and in train.log, no library adverts
    or known-harmless warnings, and an end message saying how the run ended."""
    out = subprocess.run(
        [sys.executable, "-m", "lica.train", *TINY, "rollout.num_workers=0", "trainer.log_every_s=0.01",
         f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "test_return_mean: first" in out.stdout
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists()
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()
    lines = PROGRESS_LINE.findall(out.stdout)
    assert len(lines) >= 5, out.stdout
    train_log = (tmp_path / "run" / "train.log").read_text()
    assert PROGRESS_LINE.findall(train_log) == lines
    assert "== lica run finished: 1600 env steps, 1600 of them in" in out.stdout and "== lica run finished" in train_log
    for noise in ("Tip:", "litlogger", "LeafSpec", "max_epochs=1", "weights_only"):
        assert noise not in out.stdout + out.stderr, noise


@pytest.mark.slow
def test_terminal_shows_an_env_step_bar(tmp_path):
    """In a terminal: a bar over the env-step budget with rate, ETA and the last test return."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns
    proc = subprocess.Popen([sys.executable, "-m", "lica.train", *TINY, "rollout.num_workers=0",
                             "trainer.enable_progress_bar=true", f"hydra.run.dir={tmp_path}"],
                            cwd=ROOT, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert re.search(r"lica: 100%\|█+\| 1\.60k/1\.60k env steps \[\d\d:\d\d<00:00, *[\d.]+k?steps/s, "
                     r"last test return=-?\d+\.\d\d \(at 1,600\)\]", screen), screen[-3000:]
    assert "lica.progress" not in screen  # the bar replaces the progress lines


@pytest.mark.slow
def test_tensorboard_logger_plots_against_env_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(compose_config(TINY + ["rollout.num_workers=0", "logger=[csv,tensorboard]"]), run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tested = [(e.step, e.value) for e in events.Scalars("test_return_mean")]
    rows = [r for r in read_metrics(tmp_path) if r.get("test_return_mean")]
    assert [s for s, _ in tested] == [0, 800, 1600]
    assert [v for _, v in tested] == pytest.approx([float(r["test_return_mean"]) for r in rows])
    assert len(events.Scalars("critic_loss")) == 40
