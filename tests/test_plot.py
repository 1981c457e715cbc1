"""Paper-style figures from a multirun folder (lica.plot) and the variant table callback."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

import numpy as np
import pytest
from omegaconf import OmegaConf

from lica.hydra_callbacks import VariantTable
from lica.plot import PlotError, aggregate, load_runs, main, plot_multirun

ROOT = Path(__file__).resolve().parents[1]
# Smaller than conftest.TINY: 20 iterations of 4 episodes x 10 steps, evaluations at 0/400/800.
MICRO = ["trainer.max_env_steps=800", "rollout.batch_episodes=4", "rollout.test_episodes=2",
         "rollout.eval_interval=400", "trainer.enable_progress_bar=false", "env.episode_limit=10",
         "rollout.num_workers=0"]
_MULTIRUN: dict[str, object] = {}


def offline_env(tmp: Path) -> dict[str, str]:
    """A subprocess environment where W&B stays offline and keeps its files in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONFIG_DIR=str(tmp / "wandb-config"),
               WANDB_CACHE_DIR=str(tmp / "wandb-cache"), WANDB_DATA_DIR=str(tmp / "wandb-data"))
    return env


def tiny_multirun(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real 4-job multirun (2 seeds x {C_Mix, C_MLP}, csv + offline W&B, the variant
    table callback) per test session, shared by test_plot and test_wandb."""
    if "dir" not in _MULTIRUN:
        root = tmp_path_factory.mktemp("multirun")
        sweep = root / "sweep"
        out = subprocess.run(
            [sys.executable, "-m", "lica.train", "-m", "logger=[csv,wandb]", "seed=1,2", "algo.critic=mix,mlp",
             *MICRO, f"hydra.sweep.dir={sweep}",
             "++hydra.callbacks.variant_table._target_=lica.hydra_callbacks.VariantTable"],
            cwd=ROOT, env=offline_env(root), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        _MULTIRUN.update(dir=sweep, stdout=out.stdout)
    return _MULTIRUN["dir"], _MULTIRUN["stdout"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def multirun(tmp_path_factory):
    return tiny_multirun(tmp_path_factory)


def independent_medians(folder: Path, metric: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per critic: env steps and the median over seeds, straight from the CSV files and
    each job's .hydra/config.yaml (not through lica.plot's loader)."""
    per_critic: dict[str, dict[float, list[float]]] = {}
    for job in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        critic = OmegaConf.load(job / ".hydra" / "config.yaml").algo.critic
        with (job / "csv" / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                if row[metric]:
                    per_critic.setdefault(critic, {}).setdefault(float(row["env_steps"]), []).append(float(row[metric]))
    return {c: (sorted(d), [median(d[s]) for s in sorted(d)]) for c, d in per_critic.items()}


@pytest.mark.slow
def test_plot_lines_are_the_seed_medians(multirun, tmp_path):
    folder, _ = multirun
    result = plot_multirun(folder, out=tmp_path)
    assert [p.name for p in result.files] == ["test_return_mean.png", "policy_entropy.png"]
    for path in result.files:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    for metric in ("test_return_mean", "policy_entropy"):
        expected = independent_medians(folder, metric)
        ax = result.figures[metric].axes[0]
        lines = {line.get_label().split(",")[0]: line for line in ax.get_lines()}
        assert set(lines) == {"C_Mix", "C_MLP"}  # one line per variant, seeds folded
        for critic, name in (("mix", "C_Mix"), ("mlp", "C_MLP")):
            steps, medians = expected[critic]
            np.testing.assert_allclose(lines[name].get_xdata(), steps)
            np.testing.assert_allclose(lines[name].get_ydata(), medians, rtol=1e-12)
        assert len(ax.collections) == 2  # a quartile band per variant (2 seeds each)
    assert expected["mix"][0][-1] == 800.0
    assert all(c.n_seeds == 2 and sorted(c.seeds) == [1, 2] for c in result.curves["test_return_mean"])


@pytest.mark.slow
def test_cli_and_variant_table(multirun, tmp_path, capsys):
    folder, stdout = multirun
    assert main([str(folder), "--out", str(tmp_path), "--no-entropy"]) == 0
    out = capsys.readouterr().out
    assert "C_Mix, ξ=0.1" in out and "C_MLP, ξ=0.1" in out and "wrote" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_return_mean.png"]
    # the Hydra callback printed one row per variant at the end of the multirun
    table = stdout[stdout.index("== lica multirun"):]
    rows = [line for line in table.splitlines() if line.startswith("C_M")]
    assert [r.split()[0] for r in rows] == ["C_Mix", "C_MLP"]
    finals = {c: m[1][-1] for c, m in independent_medians(folder, "test_return_mean").items()}
    for row, critic in zip(rows, ("mix", "mlp")):
        assert row.split()[1:6] == ["ξ=0.1", "probs", "mpe:spread", "lica", "2"]
        assert float(row.split()[6]) == pytest.approx(finals[critic], abs=1e-3)
    assert (folder / "variants.txt").read_text().strip() in table
    assert "C_Mix" in VariantTable().report(folder)


# -- synthetic run folders: the error paths and the grid --------------------------------
def make_run(folder: Path, seed: int, critic: str, rows: list[dict[str, float]]) -> Path:
    folder.mkdir(parents=True)
    (folder / "csv").mkdir()
    keys = sorted({k for r in rows for k in r})
    with (folder / "csv" / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tags = {"algo": "lica", "critic": critic, "entropy": "adaptive", "entropy_coef": 0.1,
            "actor_input": "probs", "env": "mpe:spread", "seed": seed}
    (folder / "summary.json").write_text(json.dumps({"tags": tags}))
    return folder


def test_seeds_are_aligned_on_a_common_env_step_grid(tmp_path):
    def points(*pairs):
        return [{"env_steps": s, "test_return_mean": v} for s, v in pairs]

    make_run(tmp_path / "0", 1, "mix", points((0, 0.0), (100, 1.0), (200, 2.0)))
    make_run(tmp_path / "1", 2, "mix", points((0, 2.0), (150, 5.0), (300, 8.0)))
    make_run(tmp_path / "2", 3, "mix", points((0, 1.0), (250, 6.0)))
    (curve,) = aggregate(load_runs(tmp_path), "test_return_mean")
    np.testing.assert_array_equal(curve.steps, [0, 100, 150, 200])  # union, within the span all seeds cover
    a = np.interp(curve.steps, [0, 100, 200], [0, 1, 2])
    b = np.interp(curve.steps, [0, 150, 300], [2, 5, 8])
    c = np.interp(curve.steps, [0, 250], [1, 6])
    np.testing.assert_allclose(curve.median, np.median([a, b, c], axis=0))
    np.testing.assert_allclose(curve.q1, np.percentile([a, b, c], 25, axis=0))
    np.testing.assert_allclose(curve.q3, np.percentile([a, b, c], 75, axis=0))


def test_single_seed_per_variant_has_no_band_and_says_so(tmp_path, capsys):
    for i, critic in enumerate(("mix", "mlp")):
        make_run(tmp_path / str(i), 1, critic, [{"env_steps": s, "test_return_mean": s / 100, "policy_entropy": 1.0}
                                                 for s in (0, 100, 200)])
    assert main([str(tmp_path), "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert out.count("single seed") == 2 and "no quartile band" in out
    result = plot_multirun(tmp_path, out=tmp_path / "plots")
    ax = result.figures["test_return_mean"].axes[0]
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 0


def test_metric_missing_in_some_runs_is_an_error(tmp_path, capsys):
    make_run(tmp_path / "0", 1, "mix", [{"env_steps": 0, "test_return_mean": 1.0, "test_battle_won_mean": 0.5}])
    make_run(tmp_path / "1", 2, "mix", [{"env_steps": 0, "test_return_mean": 2.0}])
    with pytest.raises(PlotError, match="missing in 1 of 2 runs") as err:
        plot_multirun(tmp_path, metric="test_battle_won_mean", out=tmp_path / "plots")
    assert str(tmp_path / "1") in str(err.value) and str(tmp_path / "0") not in str(err.value)
    assert main([str(tmp_path), "--metric", "nonexistent_metric"]) == 2
    err = capsys.readouterr().err
    assert "no run logged 'nonexistent_metric'" in err and "test_return_mean" in err


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(PlotError, match="no runs found"):
        plot_multirun(tmp_path)
    with pytest.raises(PlotError, match="not a folder"):
        plot_multirun(tmp_path / "nope")


def test_unknown_group_by_field_is_an_error(tmp_path):
    make_run(tmp_path / "0", 1, "mix", [{"env_steps": 0, "test_return_mean": 1.0}])
    with pytest.raises(PlotError, match="unknown --group-by"):
        plot_multirun(tmp_path, group_by=["critc"])
