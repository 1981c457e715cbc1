"""The algorithm registry (lica.config.ALGORITHMS): every algorithm composes as
``algo=<name>`` from its config class, choices are Enums rejected at compose time, the
reference configuration stays pinned, every registered algorithm runs end to end, and a
third algorithm takes its class, its config and one registry line."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass

import pytest
import torch
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from torch import nn

from lica.algos.base import ActorCriticModule
from lica.algos.losses import critic_loss, entropy_loss, masked_mean, policy_entropy, td_lambda_targets
from lica.config import ALGORITHMS, CONF_DIR, ActorCriticConfig, Algorithm, LICAConfig, register_configs, validate
from lica.envs.base import EnvInfo
from lica.models.agents import action_distribution
from lica.plot import plot_multirun
from lica.rollout.batch import EpisodeBatch
from lica.train import main, train
from tests.conftest import TINY, compose_config
from tests.test_plot import MICRO


@pytest.mark.parametrize("override,allowed", [
    ("algo.critic=transformer", "mix, mlp"), ("algo.entropy=bogus", "adaptive, vanilla"),
    ("algo.actor_input=onehot", "probs, gumbel"), ("algo.critic_target=mean", "taken, expected"),
    ("algo.agent.type=lstm", "rnn, mlp"), ("env.backend=gym", "mpe, jax, smac"),
])
def test_choices_are_rejected_at_compose_time_with_the_allowed_values(override, allowed):
    with pytest.raises(ConfigCompositionException) as err:
        compose_config([override])
    message = str(err.value) + str(err.value.__cause__)
    assert override.split("=")[0] in message and f"expected one of [{allowed}]" in message


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_each_algorithm_composes_from_its_config_class(name):
    cfg = OmegaConf.to_object(compose_config([f"algo={name}"]))
    assert type(cfg.algo) is ALGORITHMS[name].config and cfg.algo.name == name
    validate(cfg)
    tags = cfg.algo.tags()
    assert tags["algo"] == name and set(tags) == {"algo", "critic", "entropy", "entropy_coef", "actor_input"}


def test_an_algorithm_name_that_does_not_match_its_settings_is_refused():
    with pytest.raises(ValueError, match="algo.name=coma does not match .*LICAConfig.*choose the algorithm with algo=coma"):
        validate(OmegaConf.to_object(compose_config(["algo.name=coma"])))
    with pytest.raises(ValueError, match="algo.name='ppo' is not an algorithm lica knows: choose one with algo=lica"):
        validate(OmegaConf.to_object(compose_config(["algo.name=ppo"])))


def test_lica_reference_pins_every_lica_setting():
    """algo=lica_reference stays the reference code's configuration whatever LICA's defaults
    become: it sets every LICAConfig field itself (a new field must be added there too)."""
    pinned = OmegaConf.load(CONF_DIR / "algo" / "lica_reference.yaml")
    fields = {f.name for f in dataclasses.fields(LICAConfig)} - {"name"}
    assert set(pinned) - {"defaults"} == fields
    agent_fields = {f.name for f in dataclasses.fields(LICAConfig().agent)}
    assert set(pinned.agent) == agent_fields
    cfg = compose_config(["algo=lica_reference", "env=smac_5m_vs_6m"]).algo
    assert (cfg.name, cfg.actor_lr, cfg.critic_lr, cfg.td_lambda, cfg.gamma) == ("lica", 0.0025, 0.0005, 0.8, 0.99)
    assert (cfg.critic_updates, cfg.target_update_interval, cfg.target_tau, cfg.critic_target) == (1, 200, 0.0, "taken")
    assert (cfg.bootstrap_on_timeout, cfg.critic_replay, cfg.critic, cfg.entropy) == (False, 0, "mix", "adaptive")
    assert cfg.entropy_coef == 0.11  # the map's ξ, from its task file


def test_task_settings_of_one_algorithm_apply_to_that_algorithm_alone(tmp_path):
    """lica/conf/tuning/<algo>/<env>.yaml (selected by algo and env together): LICA-only keys
    there reach algo=lica on that env, and neither COMA (whose config has no such key) nor
    the pinned reference."""
    (tmp_path / "tuning" / "lica").mkdir(parents=True)
    (tmp_path / "tuning" / "lica" / "smac_MMM2.yaml").write_text("# @package _global_\nalgo:\n  critic_updates: 3\n")
    extra = ["env=smac_MMM2", f"hydra.searchpath=[file://{tmp_path}]"]
    assert compose_config(["algo=lica", *extra]).algo.critic_updates == 3
    assert compose_config(["algo=lica", *extra, "env=smac_5m_vs_6m"]).algo.critic_updates == 1
    assert compose_config(["algo=lica_reference", *extra]).algo.critic_updates == 1
    assert "critic_updates" not in compose_config(["algo=coma", *extra]).algo
    # the packaged tuning of env=spread reaches algo=lica only
    assert compose_config(["algo=lica"]).algo.critic_updates == 16
    assert compose_config(["algo=lica_reference"]).algo.critic_updates == 1


def test_env_files_hold_the_environment_only_and_each_env_has_its_task():
    for env_file in sorted((CONF_DIR / "env").glob("*.yaml")):
        assert set(OmegaConf.load(env_file)) <= {"backend", "scenario", "n_agents", "episode_limit", "args"}, env_file
        assert (CONF_DIR / "task" / env_file.name).is_file(), f"{env_file.stem} has no task file"


def read_rows(run_dir) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_registered_algorithm_runs_end_to_end(tmp_path, name):
    cfg = compose_config(TINY + ["rollout.num_workers=0", f"algo={name}"])
    summary = train(cfg, run_dir=tmp_path)
    rows = read_rows(tmp_path)
    train_rows = [r for r in rows if r.get("critic_grad_norm")]
    assert len(train_rows) == 1600 // (4 * 10)
    assert [float(r["env_steps"]) for r in rows if r.get("test_return_mean")] == [0.0, 800.0, 1600.0]
    for key in ("critic_grad_norm", "actor_loss", "actor_grad_norm", "policy_entropy", "train_return_mean"):
        assert train_rows[-1][key] != "", key
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    keys = {k.split(".")[0] for k in ckpt["state_dict"]}
    assert keys == {"actor", "critic", "target_critic"} and len(ckpt["optimizer_states"]) == 2
    assert ckpt["lica"]["critic_steps"] >= 40
    tags = OmegaConf.to_object(cfg).algo.tags()
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert {k: hparams["tags"][k] for k in tags} == {k: summary["tags"][k] for k in tags} == tags
    assert hparams["algo"]["name"] == name and summary["final_test"]["env_steps"] == 1600


# -- a third algorithm ----------------------------------------------------------------------
@dataclass
class ToyConfig(ActorCriticConfig):
    """Its config: the shared actor-critic settings and one of its own."""

    value_hidden: int = 16


class ToyActorCritic(ActorCriticModule):
    """Its class: a state-value critic V(s) fitted on TD(λ) targets, and the policy gradient
    of the joint action with the advantage ``G - V(s)``."""

    def __init__(self, algo: ToyConfig, env_info: EnvInfo) -> None:
        super().__init__(algo, env_info)
        self.critic = nn.Sequential(nn.Linear(env_info.state_dim, algo.value_hidden), nn.ReLU(),
                                    nn.Linear(algo.value_hidden, 1))
        self.make_target()

    def update(self, batch: EpisodeBatch) -> dict[str, float]:
        critic_opt, actor_opt = self.optimizers()
        algo, mask, avail = self.algo, batch.step_mask(), batch.avail[:, :-1]
        with torch.no_grad():
            target_v = self.target_critic(batch.state).squeeze(-1).masked_fill(~batch.filled, 0.0)
        targets = td_lambda_targets(target_v, batch.reward, batch.terminal(algo.bootstrap_on_timeout), mask,
                                    algo.gamma, algo.td_lambda)
        v = self.critic(batch.state[:, :-1]).squeeze(-1)
        loss_c, _ = critic_loss(v, targets, mask)
        critic_norm = self.optimise(critic_opt, loss_c, self.critic.parameters(), "critic")
        self.after_critic_step()
        self.toggle_optimizer(actor_opt)
        logits = self.actor.unroll(batch.obs[:, :-1], batch.actions_onehot[:, :-1])
        log_pi = action_distribution(logits, avail).log_prob(batch.actions[:, :-1].clone()).sum(-1)
        entropy = masked_mean(policy_entropy(logits, avail), mask)
        ent_term, _ = entropy_loss(entropy, algo.entropy, algo.entropy_weight, algo.entropy_eps)
        loss_a = -masked_mean((targets - v.detach()) * log_pi, mask) + ent_term
        actor_norm = self.optimise(actor_opt, loss_a, self.actor.parameters(), "actor")
        self.untoggle_optimizer(actor_opt)
        return {"critic_loss": loss_c.item(), "critic_grad_norm": critic_norm, "actor_loss": loss_a.item(),
                "actor_grad_norm": actor_norm, "policy_entropy": entropy.item()}


@pytest.mark.slow
def test_a_third_algorithm_takes_its_class_its_config_and_one_registry_line(tmp_path, monkeypatch, capsys):
    """Registered with one line, ``algo=toy`` composes, trains through lica.train in a
    multirun beside LICA, gets its own row in the sweep's variant table and its own curves
    in lica.plot, and its runs are tagged the way its config says."""
    monkeypatch.setitem(ALGORITHMS, "toy", Algorithm(ToyConfig, "tests.test_algorithms:ToyActorCritic"))
    register_configs()
    sweep = tmp_path / "sweep"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            GlobalHydra.instance().hydra.multirun(
                config_name="train", task_function=main,
                overrides=["algo=lica,toy", "seed=1,2", *MICRO, f"hydra.sweep.dir={sweep}",
                           "hydra/job_logging=none", "hydra/hydra_logging=none"])
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()
    assert "== lica multirun" in capsys.readouterr().out  # the variant table, printed at the end
    with (sweep / "variants.csv").open() as f:
        table = {row["variant"]: row for row in csv.DictReader(f)}
    assert set(table) == {"LICA", "TOY"}
    assert all((row["seeds"], row["failed"]) == ("2", "0") for row in table.values())
    result = plot_multirun(sweep, out=tmp_path / "plots")
    for metric in ("test_return_mean", "policy_entropy"):
        assert sorted((c.label, c.n_seeds) for c in result.curves[metric]) == [("LICA", 2), ("TOY", 2)]
    toy_job = next(p for p in sweep.iterdir() if p.is_dir() and "toy" in (p / ".hydra" / "overrides.yaml").read_text())
    tags = yaml.safe_load((toy_job / "csv" / "hparams.yaml").read_text())["tags"]
    assert {k: tags[k] for k in ("algo", "critic", "actor_input")} == {"algo": "toy", "critic": "toy",
                                                                       "actor_input": "sampled"}
    assert yaml.safe_load((toy_job / "csv" / "hparams.yaml").read_text())["algo"]["value_hidden"] == 16
