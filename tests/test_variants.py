"""One definition of a variant (lica.variants), the statistics across seeds (lica.stats)
and the sweep plan (hydra.sweeper.plan_only=true)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from scipy import stats as scipy_stats

from lica import stats, variants
from lica.config import register_configs
from tests.conftest import CONF_DIR, compose_config

ROOT = Path(__file__).resolve().parents[1]


def labels(*override_sets: list[str]) -> list[str]:
    return [v.label for v in variants.assign([compose_config(o) for o in override_sets])]


# -- variant rules -----------------------------------------------------------------------
def test_a_learning_rate_sweep_is_two_variants_labelled_by_the_rate():
    configs = [compose_config([f"algo.actor_lr={lr}", f"seed={seed}"]) for lr in (0.01, 0.0001) for seed in (0, 1)]
    vs = variants.assign(configs)
    assert [v.label for v in vs] == ["actor_lr=0.01"] * 2 + ["actor_lr=0.0001"] * 2
    assert vs[0].id == vs[1].id != vs[2].id == vs[3].id  # seeds fold, rates do not


def test_execution_only_keys_and_the_seed_do_not_make_a_variant():
    base = compose_config(["seed=0"])
    others = [compose_config(o) for o in (
        ["seed=3"], ["rollout.num_workers=0", "rollout.test_num_workers=2"], ["trainer.enable_progress_bar=false"],
        ["logger=[csv,wandb]"], ["trainer.checkpoint_every_iters=7", "trainer.torch_threads=2"],
        ["launcher=slurm_test"], ["output_dir=/tmp/x", "resume=true", "name=other"])]
    vs = variants.assign([base, *others])
    assert len({v.id for v in vs}) == 1
    assert {v.label for v in vs} == {"LICA, C_Mix, ξ=0.1, mpe:spread(n=3)"}  # nothing differs: the description
    # ...while a learning-relevant key that no facet names is a variant of its own
    assert variants.variant_id(compose_config(["rollout.eval_interval=10"])) != vs[0].id


def test_env_label_carries_the_agent_count():
    assert labels(["env=spread"], ["env=spread5"]) == ["mpe:spread(n=3)", "mpe:spread(n=5)"]  # ξ 0.1/0.2 follow the env
    assert variants.env_label(variants.flatten(compose_config(["env=smac_5m_vs_6m"]))) == "smac:5m_vs_6m"
    tags = variants.run_tags(compose_config(["env=spread5"]))
    assert tags["env"] == "mpe:spread(n=5)"


def test_coma_is_labelled_coma_everywhere():
    assert labels(["algo=lica"], ["algo=coma"]) == ["LICA", "COMA"]  # β=0 and the lrs follow the algorithm
    coma = variants.flatten(compose_config(["algo=coma"]))
    assert variants.describe(coma) == "COMA, β=0, mpe:spread(n=3)"
    assert variants.critic_label(coma) == "COMA"
    assert variants.run_tags(coma)["critic"] == "coma"
    # a LICA-only facet that differs is not shown for COMA runs
    assert labels(["algo=lica", "ablation=cmlp"], ["algo=lica"], ["algo=coma"]) == ["LICA, C_MLP", "LICA, C_Mix", "COMA"]


def test_paper_entropy_grid_labels_and_crossed_settings():
    fig2 = [compose_config(["experiment=fig2_entropy", f"experiment/fig2@_global_={v}"])
            for v in ("cmix_xi006", "vanilla_beta013", "cmlp_xi005", "cmlp_xi011")]
    assert [v.label for v in variants.assign(fig2)] == ["C_Mix, ξ=0.06", "C_Mix, β=0.13", "C_MLP, ξ=0.05",
                                                        "C_MLP, ξ=0.11"]
    # a setting crossed with the env is not explained by it
    assert labels(["env=spread", "algo.gamma=0.9"], ["env=spread5", "algo.gamma=0.9"], ["env=spread", "algo.gamma=0.95"]) \
        == ["mpe:spread(n=3), gamma=0.9", "mpe:spread(n=5), gamma=0.9", "mpe:spread(n=3), gamma=0.95"]


def test_variants_a_facet_hides_are_told_apart():
    # β does nothing for the adaptive entropy, but the configs differ: two variants, two labels
    assert labels(["algo.beta=0.1"], ["algo.beta=0.2"]) == ["ξ=0.1, beta=0.1", "ξ=0.1, beta=0.2"]


def test_variant_id_is_the_same_from_the_schema_object_and_the_saved_config(tmp_path):
    cfg = compose_config(["algo.actor_lr=0.01"])
    OmegaConf.save(cfg, tmp_path / "config.yaml")
    assert variants.variant_id(OmegaConf.to_object(cfg)) == variants.variant_id(OmegaConf.load(tmp_path / "config.yaml"))


def test_a_setting_added_since_a_run_counts_as_its_default():
    """A saved config without a setting lica has gained since is the same variant as a new
    config that leaves it at its default, and a different one from a config that changes it."""
    old = OmegaConf.to_container(compose_config([]))
    del old["algo"]["value_layers"]
    assert variants.variant_id(old) == variants.variant_id(compose_config([]))
    assert variants.variant_id(old) != variants.variant_id(compose_config(["algo.value_layers=2"]))


# -- statistics ----------------------------------------------------------------------------
def exact_bootstrap_interval(x: np.ndarray, statistic) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of ``statistic`` over all n^n equally likely resamples."""
    resamples = np.array(list(itertools.product(x, repeat=len(x))))
    return tuple(np.percentile(statistic(resamples, axis=-1), [2.5, 97.5]))


def test_point_statistics_against_a_direct_computation():
    x = [4.0, -1.0, 10.0, 2.0, 3.0]
    s = stats.summarize(x)
    ordered = sorted(x)  # -1, 2, 3, 4, 10
    assert s["n"] == 5 and s["median"] == 3.0
    assert (s["q1"], s["q3"]) == (2.0, 4.0)  # 25th/75th percentiles, linear interpolation: exact ranks here
    assert s["mean"] == pytest.approx(18 / 5)
    assert s["iqm"] == pytest.approx(np.mean(ordered[1:4]))  # 25 % cut at each end of 5 values: 1 each
    assert stats.iqm(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])) == pytest.approx(np.mean([3, 4, 5, 6]))
    assert np.isnan(stats.summarize([np.nan, 1.0])["mean_ci_low"])  # one finite seed: no interval
    assert stats.summarize([])["n"] == 0


@pytest.mark.parametrize("name", ["mean", "iqm"])
def test_bootstrap_interval_against_exhaustive_resampling(name):
    x = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    statistic = np.mean if name == "mean" else stats.iqm
    lo, hi = stats.bootstrap_ci(x, statistic, n_resamples=100_000)
    exact_lo, exact_hi = exact_bootstrap_interval(x, statistic)
    # the resampling distribution is discrete: atoms of the mean are 0.2 apart, of the IQM 1/3
    assert lo == pytest.approx(exact_lo, abs=0.34) and hi == pytest.approx(exact_hi, abs=0.34)
    assert stats.bootstrap_ci(x, statistic) == stats.bootstrap_ci(x, statistic)  # seeded: reproducible
    s = stats.summarize(x)
    assert s[f"{name}_ci_low"] <= s[name] <= s[f"{name}_ci_high"]
    assert s[f"{name}_ci_low"] == pytest.approx(exact_lo, abs=0.5)


def test_iqm_is_scipys_trimmed_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(size=12)
    assert stats.iqm(x) == pytest.approx(scipy_stats.trim_mean(x, 0.25))
    assert stats.iqm(x) == pytest.approx(np.mean(np.sort(x)[3:9]))


# -- the sweep plan ------------------------------------------------------------------------
def plan(args: list[str], capsys) -> str:
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
            GlobalHydra.instance().hydra.multirun(
                config_name="train", task_function=lambda cfg: pytest.fail("plan_only launched a job"),
                overrides=args + ["hydra.sweeper.plan_only=true", "hydra/job_logging=none",
                                  "hydra/hydra_logging=none"])
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    return capsys.readouterr().out


@pytest.mark.parametrize("experiment,jobs,n_variants", [("fig6_ablations", 15, 3), ("fig2_entropy", 35, 7)])
def test_plan_lists_every_job_of_a_paper_grid(experiment, jobs, n_variants, capsys, tmp_path):
    out = plan([f"experiment={experiment}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], capsys)
    listed = [line for line in out.splitlines() if line.lstrip().startswith("#")]
    assert len(listed) == jobs and f"total: {jobs} jobs, {n_variants} variants" in out
    assert not (tmp_path / "sweep").exists()  # nothing submitted, nothing written
    if experiment == "fig6_ablations":
        assert "#5   ablation=cmlp seed=0 experiment=fig6_ablations   -> C_MLP, π input" in out
        assert sum("-> C_Mix, Gumbel input" in line for line in listed) == 5


@pytest.mark.slow
def test_plan_from_the_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lica.train", "-m", "algo.actor_lr=0.01,0.0001", "seed=0,1",
         "hydra.sweeper.plan_only=true", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "total: 4 jobs, 2 variants" in out.stdout and "-> actor_lr=0.0001" in out.stdout
    assert "lica multirun" in out.stdout and "variant table" not in out.stdout
    assert not (tmp_path / "sweep").exists()
