"""Paper-style figures from a multirun folder (lica.plot) and the end-of-sweep report (VariantTable)."""

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
from lica.plot import HEALTH_METRICS, aggregate, main, plot_multirun
from lica.runs import RunsError, load_runs
from tests.conftest import compose_config

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
    health = [f"{m}.{ext}" for m in HEALTH_METRICS for ext in ("png", "pdf")]
    assert [p.name for p in result.files] == ["test_return_mean.png", "test_return_mean.pdf",
                                              "policy_entropy.png", "policy_entropy.pdf", *health]
    for path in result.files:
        magic = b"\x89PNG\r\n\x1a\n" if path.suffix == ".png" else b"%PDF"
        assert path.read_bytes().startswith(magic) and path.stat().st_size > 5000
    for metric in ("test_return_mean", "policy_entropy", "critic_bias"):
        expected = independent_medians(folder, metric)
        ax = result.figures[metric].axes[0]
        lines = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
        for critic, name in (("mix", "C_Mix"), ("mlp", "C_MLP")):  # one line per variant, seeds folded
            steps, medians = expected[critic]
            np.testing.assert_allclose(lines[name].get_xdata(), steps)
            np.testing.assert_allclose(lines[name].get_ydata(), medians, rtol=1e-12)
            marked = np.asarray(lines[name].get_xdata())[lines[name].get_markevery()]
            evaluations = [0, 400, 800] if metric.startswith("test_") else [400, 800]  # entropy: from 1st update
            np.testing.assert_array_equal(marked, evaluations)  # markers at the evaluations only
        assert len(ax.collections) == 0  # 2 seeds per variant: no quartile band
        assert "environment steps" in ax.get_xlabel()
    entropy_ax = result.figures["policy_entropy"].axes[0]
    assert entropy_ax.get_ylabel() == "policy entropy (nats)"
    (top,) = [line for line in entropy_ax.get_lines() if line.get_label().startswith("maximum")]
    assert top.get_ydata()[0] == pytest.approx(np.log(5))  # spread: 5 actions
    assert expected["mix"][0][-1] == 800.0
    assert all(c.n_seeds == 2 and sorted(c.seeds) == [1, 2] for c in result.curves["test_return_mean"])
    assert sum("no quartile band" in m for m in result.messages) == 2


@pytest.mark.slow
def test_cli_and_variant_table(multirun, tmp_path, capsys):
    folder, stdout = multirun
    assert main([str(folder), "--out", str(tmp_path), "--no-entropy", "--no-health"]) == 0
    out = capsys.readouterr().out
    assert "C_Mix" in out and "C_MLP" in out and "wrote" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_return_mean.pdf", "test_return_mean.png"]
    # the Hydra callback printed one row per variant at the end of the multirun, labelled by what differs
    table = stdout[stdout.index("== lica multirun"):]
    assert "4 jobs, 2 variants of LICA, ξ=0.1, mpe:spread(n=3)" in table
    rows = [line.split() for line in table.splitlines() if line.startswith("C_M")]
    assert [r[0] for r in rows] == ["C_Mix", "C_MLP"]
    finals = {}
    for job in sorted(p for p in folder.iterdir() if p.name.isdigit()):
        critic = OmegaConf.load(job / ".hydra" / "config.yaml").algo.critic
        last = [r for r in csv.DictReader((job / "csv" / "metrics.csv").open()) if r["test_return_mean"]][-1]
        finals.setdefault(critic, []).append(float(last["test_return_mean"]))
    for row, critic in zip(rows, ("mix", "mlp")):
        assert row[1:3] == ["2", "0"]  # seeds, failed
        x = np.array(finals[critic])
        assert float(row[3]) == pytest.approx(np.median(x), abs=1e-3)
        assert float(row[4].strip("[,")) == pytest.approx(np.percentile(x, 25), abs=1e-3)
        assert float(row[6]) == pytest.approx(np.mean(x), abs=1e-3)
        assert float(row[9]) == pytest.approx(np.mean(x), abs=1e-3)  # IQM of 2 values: nothing trimmed
    assert (folder / "variants.txt").read_text().strip() in table
    with (folder / "variants.csv").open() as f:
        written = list(csv.DictReader(f))
    assert [r["variant"] for r in written] == ["C_Mix", "C_MLP"]
    assert float(written[0]["median"]) == pytest.approx(np.median(finals["mix"]))
    assert "| C_MLP | 2 | 0 |" in (folder / "variants.md").read_text()
    assert "C_Mix" in VariantTable().report(folder)


# -- synthetic run folders: the error paths and the grid --------------------------------
def make_run(folder: Path, seed: int, critic: str, rows: list[dict[str, float]], finished: bool = True) -> Path:
    """A run folder as a job writes it: .hydra/config.yaml, csv/metrics.csv, summary.json."""
    folder.mkdir(parents=True)
    (folder / "csv").mkdir()
    (folder / ".hydra").mkdir()
    OmegaConf.save(compose_config([f"seed={seed}", f"algo.critic={critic}"]), folder / ".hydra" / "config.yaml")
    keys = sorted({k for r in rows for k in r})
    with (folder / "csv" / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    if finished:
        (folder / "summary.json").write_text(json.dumps({"env_info": {"n_actions": 5}, "interrupted_by": None}))
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
    assert curve.has_band  # 3 seeds
    fig = plot_multirun(tmp_path, out=tmp_path / "plots", entropy=False).figures["test_return_mean"]
    assert len(fig.axes[0].collections) == 1


def test_title_and_note_fit_in_a_one_panel_figure(tmp_path):
    """Every text of a one-env figure lies inside the saved image (the title used to run off it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = [{"env_steps": s, "test_return_mean": s / 100} for s in (0, 100, 200)]
    make_run(tmp_path / "0", 1, "mix", rows)
    make_run(tmp_path / "1", 2, "mix", rows, finished=False)  # a note under the panel
    fig = plot_multirun(tmp_path, out=tmp_path / "plots", entropy=False).figures["test_return_mean"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    page = fig.bbox
    for text in (fig._suptitle, fig._supxlabel):
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (text.get_text(), box, page)


def test_failed_and_unfinished_runs_are_excluded_and_named(tmp_path, capsys):
    rows = [{"env_steps": s, "test_return_mean": s / 100, "policy_entropy": 1.0} for s in (0, 100, 200)]
    for i in range(3):
        make_run(tmp_path / str(i), i, "mix", rows)
    make_run(tmp_path / "3", 3, "mix", rows[:2], finished=False)  # crashed or still running
    make_run(tmp_path / "4", 1, "mlp", rows)
    assert main([str(tmp_path), "--out", str(tmp_path / "plots")]) == 0
    out = capsys.readouterr().out
    assert "excluded: " + str(tmp_path / "3") in out and "did not finish" in out
    assert out.count("no quartile band") == 1  # C_MLP: one seed; C_Mix: 3 finished seeds
    result = plot_multirun(tmp_path, out=tmp_path / "plots")
    curves = {c.label: c for c in result.curves["test_return_mean"]}
    assert curves["C_Mix"].n_seeds == 3 and curves["C_Mix"].has_band and not curves["C_MLP"].has_band
    np.testing.assert_array_equal(curves["C_Mix"].steps, [0, 100, 200])  # the unfinished seed does not cut it
    ax = result.figures["test_return_mean"].axes[0]
    assert len(ax.collections) == 1  # one band: C_Mix
    assert "Excluded 1 of 5 runs" in result.figures["test_return_mean"].get_supxlabel()
    # the report counts the unfinished seed with the failed ones
    table = VariantTable().report(tmp_path)
    assert [line.split()[:3] for line in table.splitlines() if line.startswith("C_M")] == \
        [["C_Mix", "3", "1"], ["C_MLP", "1", "0"]]


def test_metric_missing_in_some_runs_is_an_error(tmp_path, capsys):
    make_run(tmp_path / "0", 1, "mix", [{"env_steps": 0, "test_return_mean": 1.0, "test_battle_won_mean": 0.5}])
    make_run(tmp_path / "1", 2, "mix", [{"env_steps": 0, "test_return_mean": 2.0}])
    with pytest.raises(RunsError, match="missing in 1 of 2 runs") as err:
        plot_multirun(tmp_path, metric="test_battle_won_mean", out=tmp_path / "plots")
    assert str(tmp_path / "1") in str(err.value) and str(tmp_path / "0") not in str(err.value)
    assert main([str(tmp_path), "--metric", "nonexistent_metric"]) == 2
    err = capsys.readouterr().err
    assert "no run logged 'nonexistent_metric'" in err and "test_return_mean" in err


def test_empty_or_missing_folder_is_an_error(tmp_path):
    with pytest.raises(RunsError, match="no runs found"):
        plot_multirun(tmp_path)
    with pytest.raises(RunsError, match="not a folder"):
        plot_multirun(tmp_path / "nope")


def test_runs_added_to_a_sweep_folder_join_the_recorded_variant(tmp_path):
    """Seeds run later into a sweep's folder (not jobs of its jobs.json) are loaded, in the
    recorded variant with the same settings, even when the sweep recorded its variant id
    before lica gained a setting (here ``algo.value_layers``, left at its default)."""
    rows = [{"env_steps": s, "test_return_mean": s / 100} for s in (0, 100, 200)]
    jobs = []
    for seed in (0, 1):
        run = make_run(tmp_path / str(seed), seed, "mix", rows)
        saved = OmegaConf.load(run / ".hydra" / "config.yaml")
        del saved.algo["value_layers"]  # written by a lica without that setting
        OmegaConf.save(saved, run / ".hydra" / "config.yaml")
        jobs.append({"num": seed, "overrides": [f"seed={seed}"], "variant": "C_Mix", "variant_id": "0ld1d000",
                     "env": "mpe:spread(n=3)", "working_dir": str(run), "status": "COMPLETED"})
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": jobs}))
    make_run(tmp_path / "2", 2, "mix", rows)  # added later by a single run
    make_run(tmp_path / "3", 3, "mlp", rows)  # ... with other settings
    runs = load_runs(tmp_path)
    assert [r.path.name for r in runs] == ["0", "1", "2", "3"]
    assert [r.variant.id for r in runs[:3]] == ["0ld1d000"] * 3 and runs[3].variant.id != "0ld1d000"
    (curve, other) = aggregate(runs, "test_return_mean")
    assert curve.n_seeds == 3 and other.n_seeds == 1
