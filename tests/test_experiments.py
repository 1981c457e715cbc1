"""The paper's setups and grids (``lica/conf/experiment/``) compose and expand as documented.

A grid is an experiment whose ``hydra.sweeper.params`` Hydra's basic sweeper expands under
``python -m lica.train -m experiment=<name>``.  :func:`expand` does what
``BasicSweeper.sweep`` does (the experiment's params first, then the command line, parsed by
Hydra's override parser and crossed by ``BasicSweeper.split_arguments``), and
``test_expansion_matches_real_multirun`` checks it against a real multirun with a no-op task.
Composing costs ~0.2 s, so every job is counted but only one job per distinct setting
(all overrides but the seed) is composed and checked.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from lica.config import register_configs, validate

from tests.conftest import CONF_DIR

EXPERIMENT_DIR = Path(CONF_DIR) / "experiment"
# the top-level experiments and the paper's MPE setups (one file per task)
EXPERIMENTS = sorted([p.stem for p in EXPERIMENT_DIR.glob("*.yaml")]
                     + [f"mpe_paper/{p.stem}" for p in (EXPERIMENT_DIR / "mpe_paper").glob("*.yaml")])
SEEDS = {0, 1, 2, 3, 4}

# Jobs per experiment under `-m experiment=<name>` (1: a single run, no sweep).
EXPECTED_JOBS = {
    "mpe_paper/predator_prey": 1, "mpe_paper/spread": 1, "mpe_paper/spread5": 1,
    "fig2_entropy": 35, "fig2_entropy_smax": 35,  # 7 variants x 5 seeds
    "fig3_mpe": 15,  # 3 MPE tasks x 5 seeds
    "fig4_smac": 30,  # 6 maps x 5 seeds
    "fig4_smax": 15,  # 3 maps x 5 seeds
    "fig6_ablations": 15, "fig6_ablations_smax": 15,  # 3 ablations x 5 seeds
    "figA1_ablations": 30,  # 2 maps x 3 ablations x 5 seeds
}

# Paper values (docs/algorithm.md §5, §7): SMAC map -> (xi, env-step budget).
SMAC_MAPS = {
    "2s3z": (0.06, 32_000_000), "1c3s5z": (0.06, 32_000_000), "5m_vs_6m": (0.11, 64_000_000),
    "2c_vs_64zg": (0.06, 64_000_000), "MMM2": (0.06, 64_000_000), "3s5z_vs_3s6z": (0.03, 64_000_000),
}
SMAX_MAPS = ("2s3z", "5m_vs_6m", "3s5z_vs_3s6z")
# Fig. 2 variant -> (critic, entropy mode, its coefficient: xi if adaptive else beta).
FIG2 = {
    "cmix_xi006": ("mix", "adaptive", 0.06), "cmix_xi011": ("mix", "adaptive", 0.11),
    "vanilla_beta013": ("mix", "vanilla", 0.13), "vanilla_beta015": ("mix", "vanilla", 0.15),
    "vanilla_beta017": ("mix", "vanilla", 0.17),
    "cmlp_xi005": ("mlp", "adaptive", 0.05), "cmlp_xi011": ("mlp", "adaptive", 0.11),
}
# Fig. 6 / A1 ablation -> (critic, entropy mode, actor input).
ABLATIONS = {"full": ("mix", "adaptive", "probs"), "cmlp": ("mlp", "adaptive", "probs"),
             "gumbel": ("mix", "adaptive", "gumbel")}
# Paper MPE task -> (env file's scenario, n_agents, policy hidden units, gamma, batch episodes, xi).
MPE_TASKS = {
    "predator_prey": ("predator_prey", 3, 128, 0.99, 128, 0.1),
    "spread": ("spread", 3, 32, 0.9, 32, 0.1),
    "spread5": ("spread", 5, 32, 0.9, 32, 0.2),
}


def _compose(overrides: list[str]) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        return compose(config_name="train", overrides=overrides)


def expand(args: list[str]) -> tuple[DictConfig, list[list[str]]]:
    """The primary config of ``python -m lica.train -m <args>`` (composed in multirun mode,
    where sweep overrides are left to the sweeper) and its jobs' overrides, expanded as
    Hydra's BasicSweeper does (params from the config, then the command line)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
        cfg = GlobalHydra.instance().hydra.compose_config(
            config_name="train", overrides=args, run_mode=RunMode.MULTIRUN, with_log_configuration=False)
    params = cfg.hydra.sweeper.params or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(args)
    overrides = OverridesParser.create().parse_overrides(lines)
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    return cfg, batch


def _as_dict(job: list[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in job)


def compose_job(job: list[str]) -> DictConfig:
    """A job's task config, as the launcher composes it; also schema-checked and validated.
    Cached (read-only use): the grid tests and the generic test share their jobs."""
    return _compose_job(tuple(job))


@functools.lru_cache(maxsize=None)
def _compose_job(job: tuple[str, ...]) -> DictConfig:
    cfg = _compose(list(job))
    validate(OmegaConf.to_object(cfg))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def distinct_jobs(jobs: list[list[str]]) -> list[list[str]]:
    """One job per setting apart from the seed (the last seed, so the seed is checked too)."""
    seen: dict[tuple, list[str]] = {}
    for job in jobs:
        seen[tuple(o for o in job if not o.startswith("seed="))] = job
    return list(seen.values())


def _smac_checks(cfg: DictConfig, backend: str, scenario: str) -> None:
    xi, budget = SMAC_MAPS[scenario]
    assert (cfg.env.backend, cfg.env.scenario) == (backend, scenario)
    assert cfg.trainer.max_env_steps == budget
    assert (cfg.rollout.eval_interval, cfg.rollout.test_episodes) == (320_000, 32)
    assert (cfg.algo.agent.type, cfg.algo.agent.shared, cfg.algo.td_lambda) == ("rnn", True, 0.8)
    assert (cfg.algo.actor_lr, cfg.algo.critic_lr) == (0.0025, 0.0005)


# ---------------------------------------------------------------------------------------------


def test_every_experiment_has_an_expected_job_count():
    assert EXPERIMENTS, f"no experiment configs in {EXPERIMENT_DIR}"
    missing = sorted(set(EXPERIMENTS) - set(EXPECTED_JOBS))
    assert not missing, f"add these experiments to EXPECTED_JOBS in {__file__}: {missing}"
    assert not set(EXPECTED_JOBS) - set(EXPERIMENTS), "EXPECTED_JOBS names a missing experiment"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_expands(name):
    cfg, jobs = expand([f"experiment={name}"])
    assert len(jobs) == EXPECTED_JOBS.get(name), f"{name}: {len(jobs)} jobs"
    name = name.replace("/", "_")  # mpe_paper/spread is named mpe_paper_spread
    assert cfg.name == name, "an experiment sets name: to its own name (output folders, W&B group)"
    assert len({tuple(sorted(j)) for j in jobs}) == len(jobs), "duplicate jobs"
    if len(jobs) > 1:
        assert {int(_as_dict(j)["seed"]) for j in jobs} == SEEDS, "grids run the paper's 5 seeds"
    with open_dict(cfg):
        del cfg.hydra
    validate(OmegaConf.to_object(cfg))  # the config a run without -m gets
    for job in distinct_jobs(jobs):
        job_cfg = compose_job(job)
        assert job_cfg.name == name
        assert job_cfg.seed == int(_as_dict(job).get("seed", 0))


def test_fig2_entropy_grid():
    """7 variants (one sweep key over the experiment/fig2 group: every option, nothing else)
    x 5 seeds, each variant with the right critic, entropy mode and coefficient."""
    _, jobs = expand(["experiment=fig2_entropy"])
    per_variant: dict[str, set[str]] = {}
    for job in map(_as_dict, jobs):
        per_variant.setdefault(job["experiment/fig2@_global_"], set()).add(job["seed"])
    assert set(per_variant) == set(FIG2) == {p.stem for p in (EXPERIMENT_DIR / "fig2").glob("*.yaml")}
    assert all(len(seeds) == 5 for seeds in per_variant.values())
    for smax in (False, True):
        name = "fig2_entropy_smax" if smax else "fig2_entropy"
        _, jobs = expand([f"experiment={name}", "seed=4"])
        assert len(jobs) == 7
        for job in jobs:
            c = compose_job(job)
            critic, entropy, coef = FIG2[_as_dict(job)["experiment/fig2@_global_"]]
            assert (c.algo.critic, c.algo.entropy, c.algo.actor_input) == (critic, entropy, "probs")
            assert (c.algo.entropy_coef if entropy == "adaptive" else c.algo.beta) == coef
            _smac_checks(c, "jax" if smax else "smac", "5m_vs_6m")
            assert c.seed == 4


def test_fig4_grids_carry_per_map_xi_and_budget():
    _, jobs = expand(["experiment=fig4_smac", "seed=4"])
    maps = []
    for job in jobs:
        c = compose_job(job)
        maps.append(c.env.scenario)
        _smac_checks(c, "smac", c.env.scenario)
        assert c.algo.entropy_coef == SMAC_MAPS[c.env.scenario][0]
    assert sorted(maps) == sorted(SMAC_MAPS)
    _, jobs = expand(["experiment=fig4_smax", "seed=4"])
    maps = []
    for job in jobs:
        c = compose_job(job)
        maps.append(c.env.scenario)
        _smac_checks(c, "jax", c.env.scenario)  # the SMAC twin's xi, budget and evaluation
        assert c.algo.entropy_coef == SMAC_MAPS[c.env.scenario][0]
    assert sorted(maps) == sorted(SMAX_MAPS)
    # one map of the grid from the command line: the command line replaces the env axis
    _, jobs = expand(["experiment=fig4_smac", "env=smac_MMM2"])
    assert len(jobs) == 5 and {_as_dict(j)["env"] for j in jobs} == {"smac_MMM2"}


@pytest.mark.parametrize("name,maps", [
    ("fig6_ablations", ["5m_vs_6m"]), ("fig6_ablations_smax", ["5m_vs_6m"]),
    ("figA1_ablations", ["2c_vs_64zg", "MMM2"]),
])
def test_ablation_grids(name, maps):
    _, jobs = expand([f"experiment={name}", "seed=4"])
    assert len(jobs) == 3 * len(maps)
    seen = set()
    for job in jobs:
        c = compose_job(job)
        ablation = _as_dict(job)["ablation"]
        assert (c.algo.critic, c.algo.entropy, c.algo.actor_input) == ABLATIONS[ablation]
        assert c.algo.entropy_coef == SMAC_MAPS[c.env.scenario][0]
        _smac_checks(c, "jax" if name.endswith("smax") else "smac", c.env.scenario)
        seen.add((c.env.scenario, ablation))
    assert seen == {(m, a) for m in maps for a in ABLATIONS}


def test_fig6_runs_on_other_maps_from_the_command_line():
    _, jobs = expand(["experiment=fig6_ablations", "env=smac_2c_vs_64zg,smac_MMM2"])
    assert len(jobs) == 30
    c = compose_job(next(j for j in jobs if "env=smac_MMM2" in j and "ablation=cmlp" in j))
    assert (c.env.scenario, c.algo.critic, c.algo.entropy_coef, c.trainer.max_env_steps) == \
        ("MMM2", "mlp", 0.06, 64_000_000)


def _mpe_checks(c: DictConfig, task: str) -> None:
    scenario, n_agents, hidden, gamma, batch, xi = MPE_TASKS[task]
    assert (c.env.backend, c.env.scenario, c.env.n_agents) == ("mpe", scenario, n_agents)
    assert (c.algo.agent.type, c.algo.agent.shared, c.algo.agent.hidden_dim) == ("mlp", False, hidden)
    assert (c.algo.gamma, c.algo.td_lambda, c.rollout.batch_episodes) == (gamma, 0.0, batch)
    # LICA's MPE critic settings (lica/conf/tuning/lica/mpe_common.yaml) on the paper's setup
    assert (c.algo.actor_lr, c.algo.critic_lr, c.algo.target_update_interval) == (1e-3, 3e-4, 50)
    assert (c.algo.critic_replay, c.algo.critic_updates, c.algo.critic_target) == (8, 16, "expected")
    assert c.algo.entropy_coef == xi
    assert c.env.episode_limit == 200 and c.trainer.max_env_steps == 5000 * 200
    assert (c.algo.critic, c.algo.entropy, c.algo.actor_input) == ("mix", "adaptive", "probs")


@pytest.mark.parametrize("task", sorted(MPE_TASKS))
def test_mpe_paper_setups(task):
    _mpe_checks(compose_job([f"experiment=mpe_paper/{task}"]), task)


def test_mpe_paper_setup_on_the_jaxmarl_twin():
    c = compose_job(["experiment=mpe_paper/spread5", "env=jax_spread5"])
    assert (c.env.backend, c.env.scenario, c.env.n_agents, c.env.episode_limit) == ("jax", "spread", 5, 200)
    assert (c.algo.entropy_coef, c.algo.actor_lr, c.algo.gamma, c.algo.agent.hidden_dim) == (0.2, 1e-3, 0.9, 32)


@pytest.mark.parametrize("mpe2,jax", [("spread", "jax_spread"), ("spread5", "jax_spread5")])
def test_jaxmarl_twin_trains_lica_with_its_mpe2_settings(mpe2, jax):
    """A JAX twin's tuning includes its mpe2 env's (lica/conf/tuning/lica/jax_*.yaml): same
    task, same algorithm settings (spread5's narrower hypernetwork included)."""
    a, b = compose_job([f"env={mpe2}"]).algo, compose_job([f"env={jax}"]).algo
    assert OmegaConf.to_container(a) == OmegaConf.to_container(b)
    assert b.critic_updates == 16 and b.hypernet_embed == (64 if mpe2 == "spread5" else None)


def test_fig3_mpe_grid():
    _, jobs = expand(["experiment=fig3_mpe", "seed=4"])
    tasks = []
    for job in jobs:
        task = _as_dict(job)["experiment/mpe_paper@_global_"]
        _mpe_checks(compose_job(job), task)
        tasks.append(task)
    assert sorted(tasks) == sorted(MPE_TASKS)


def test_expansion_matches_real_multirun(tmp_path):
    """Hydra's own multirun (BasicSweeper + BasicLauncher, no-op task) runs exactly the jobs
    :func:`expand` predicts, with the same configs; figA1 also covers params merged from an
    included experiment (fig6_ablations) and an env axis that replaces a defaults override."""
    grids = (["experiment=fig2_entropy", "seed=4"],  # 7 jobs
             ["experiment=figA1_ablations", "seed=4", "ablation=cmlp"])  # 2 jobs: the env axis
    for i, args in enumerate(grids):
        seen: list[tuple] = []

        def task(cfg: DictConfig) -> None:
            seen.append((cfg.env.scenario, cfg.algo.critic, cfg.algo.entropy, cfg.algo.actor_input,
                         cfg.algo.entropy_coef, cfg.algo.beta, cfg.seed, cfg.name))

        register_configs()
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(version_base="1.3", config_dir=CONF_DIR):
                returns = GlobalHydra.instance().hydra.multirun(
                    config_name="train", task_function=task,
                    overrides=args + [f"hydra.sweep.dir={tmp_path / str(i)}",
                                      "hydra/job_logging=none", "hydra/hydra_logging=none"])
        finally:
            HydraConfig.instance().cfg = None
            GlobalHydra.instance().clear()
        _, jobs = expand(args)
        assert [list(r.overrides) for batch in returns for r in batch] == jobs
        expected = []
        for job in jobs:
            c = compose_job(job)
            expected.append((c.env.scenario, c.algo.critic, c.algo.entropy, c.algo.actor_input,
                             c.algo.entropy_coef, c.algo.beta, c.seed, c.name))
        assert seen == expected
