"""The throughput bench runs end to end and writes its report (no speed assertions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lica import bench
from lica.config import EnvConfig
from lica.envs import make_vec_env

TINY = ["--reps", "1", "--min-seconds", "0", "--min-batches", "1", "--warmup", "0",
        "--set", "rollout.batch_episodes=4", "--set", "env.episode_limit=5",
        "--set", "rollout.test_episodes=2"]


@pytest.mark.slow
def test_bench_smoke_writes_json_with_positive_rates(tmp_path, capsys):
    out = tmp_path / "bench.json"
    bench.main(["--envs", "spread", "--workers", "0,2", *TINY, "--out", str(out)])
    report = json.loads(out.read_text())

    machine = report["machine"]
    for key in ("cpu_model", "cpu_count", "usable_cores", "python", "torch", "numpy", "jax", "platform"):
        assert key in machine, key
    assert machine["usable_cores"] >= 1 and machine["torch"]

    assert report["failed"] == [] and report["skipped"] == []
    assert [(r["env"], r["workers"]) for r in report["results"]] == [("spread", 0), ("spread", 2)]
    for r in report["results"]:
        assert (r["num_envs"], r["n_agents"], r["episode_limit"]) == (4, 3, 5)
        for quantity in ("limit", "rollout", "training"):
            assert r[quantity]["env_steps_per_s"] > 0, quantity
            (rep,) = r[quantity]["reps"]
            # every env runs one whole 5-step episode per batch (spread never terminates early)
            assert rep["env_steps"] == rep["batches"] * 4 * 5 and rep["seconds"] > 0
        assert r["rollout_over_limit"] > 0 and r["training_over_limit"] > 0

    table = capsys.readouterr().out
    assert "roll/lim" in table and "train/lim" in table and "spread" in table


def test_bench_limit_counts_lockstep_episode_steps():
    """The limit loop steps every env until its episode ends, like the collector."""
    with make_vec_env(EnvConfig(backend="mpe", scenario="predator_prey", episode_limit=30), 3, num_workers=0) as vec:
        steps = bench.random_episode_batch(vec, np.arange(3), np.random.default_rng(0))
    assert 3 <= steps <= 3 * 30


def test_bench_arguments_are_checked():
    settings, out = bench.parse_args(["--envs", "spread,spread5", "--workers", "0,4", "--reps", "2",
                                      "--set", "trainer.torch_threads=2", "--no-train"])
    assert settings.envs == ("spread", "spread5") and settings.workers == (0, 4) and settings.reps == 2
    assert settings.overrides == ("trainer.torch_threads=2",) and not settings.train
    assert out.name == "bench.json"
    with pytest.raises(SystemExit):
        bench.parse_args(["--reps", "0"])


@pytest.mark.slow
@pytest.mark.jax
def test_bench_measures_the_fused_limit_for_jax(tmp_path):
    pytest.importorskip("jaxmarl", reason="needs the 'jax' extra")
    out = tmp_path / "bench.json"
    report = bench.main(["--envs", "jax_spread", "--no-train", *TINY, "--out", str(out)])
    (r,) = json.loads(out.read_text())["results"]
    assert r["workers"] is None and r["training"]["env_steps_per_s"] is None
    for quantity in ("limit", "rollout", "fused_limit"):
        (rep,) = r[quantity]["reps"]
        assert rep["env_steps"] == rep["batches"] * 4 * 5 and r[quantity]["env_steps_per_s"] > 0, quantity
    assert r["rollout_over_fused_limit"] > 0
    assert "fused lim" in bench.format_table(report)  # (jaxmarl's import swaps sys.stdout: no capsys)
