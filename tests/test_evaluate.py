"""``python -m lica.evaluate``: test metrics of a saved policy, and an animation of MPE episodes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from lica.envs.mpe import make_env
from lica.evaluate import main, parse_args
from lica.render import RecordingEnv
from lica.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    train(compose_config(TINY + ["rollout.num_workers=0"]), run_dir=run)
    return run


def evaluated(run: Path, *args: str) -> dict:
    """Evaluate with ``args``; the JSON file ``main`` wrote (its default name)."""
    assert main([str(run), *args]) == 0
    kw = dict(a.split("=") for a in args)
    name = f"last-{kw.get('policy', 'greedy')}-seed{kw.get('seed', 0)}-n{kw.get('episodes', 32)}.json"
    return json.loads((run / "eval" / name).read_text())


@pytest.mark.slow
def test_evaluate_writes_metrics_and_an_animation(run_dir, capsys):
    result = evaluated(run_dir, "episodes=4", "seed=1")
    out = capsys.readouterr().out
    assert f"test_return_mean: {result['test_return_mean']:.3f}" in out and "animation:" in out
    assert Path(result["metrics_file"]) == run_dir / "eval" / "last-greedy-seed1-n4.json"
    assert result["checkpoint_env_steps"] == 1600 and result["episodes"] == 4 and len(result["returns"]) == 4
    assert result["test_return_mean"] == pytest.approx(np.mean(result["returns"]))
    gif = Image.open(result["animation"])
    assert gif.n_frames == 2 * (10 + 1)  # two episodes (the default), reset + 10 steps each
    # the same arguments give the same numbers; sampling gives others
    assert evaluated(run_dir, "episodes=4", "seed=1", "render=0")["returns"] == result["returns"]
    sampled = evaluated(run_dir, "episodes=4", "seed=1", "policy=sampled", "render=0")
    assert sampled["policy"] == "sampled" and sampled["returns"] != result["returns"]
    assert "animation" not in sampled


@pytest.mark.slow
def test_evaluate_cli_takes_a_checkpoint_file(run_dir):
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = subprocess.run([sys.executable, "-m", "lica.evaluate", str(ckpt), "episodes=2", "name=cli"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"lica.evaluate: {ckpt} (1,600 env steps), 2 greedy episodes of mpe:spread, seed 0" in out.stdout
    assert "test_return_mean:" in out.stdout
    assert (run_dir / "eval" / "cli.json").exists() and (run_dir / "eval" / "cli.gif").exists()


@pytest.mark.parametrize("argv,match", [
    ([], "usage"), (["run", "episodes=0"], "episodes must be >= 1"), (["run", "policy=random"], "greedy or sampled"),
    (["run", "episode=3"], "unknown argument 'episode=3'"), (["run", "seed=x"], "seed must be an integer"),
])
def test_bad_arguments_name_the_fix(argv, match):
    with pytest.raises(SystemExit, match=match):
        parse_args(argv)


def test_recording_env_keeps_every_frame_and_the_return():
    env_cfg = OmegaConf.to_object(compose_config(["env.episode_limit=5"])).env
    env = RecordingEnv(make_env(env_cfg))
    env.reset(seed=3)
    rewards = [env.step(np.zeros(3, dtype=np.int64))[1] for _ in range(5)]
    assert [f.t for f in env.frames] == [0, 1, 2, 3, 4, 5]
    assert env.frames[-1].ret == pytest.approx(sum(rewards))
    scene = env.frames[-1].scene
    assert scene["pos"].shape == (6, 2) and scene["learner"].tolist() == [True] * 3 + [False] * 3
