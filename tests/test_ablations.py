"""The paper's ablations (docs/algorithm.md §9) as composable configs: ``ablation=cmlp``
(C_MLP critic), ``ablation=vanilla_entropy`` (−β·H̄ instead of −ξ·H̄/sg(H̄)) and
``ablation=gumbel`` (straight-through Gumbel-Softmax critic input).  Each switch changes
exactly its own component, in the composed config and in the built module."""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import lica.algos.lica as lica_module
from lica.algos import build_module
from lica.algos.losses import masked_mean, policy_entropy
from lica.envs.base import EnvInfo
from lica.models.agents import action_distribution
from lica.models.critics import MixingCritic, MLPCritic
from lica.rollout.batch import EpisodeBatch
from lica.train import train
from tests.conftest import TINY, compose_config

ROOT = Path(__file__).resolve().parents[1]
INFO = EnvInfo(n_agents=3, n_actions=5, obs_dim=6, state_dim=7, episode_limit=4)

# ablation override -> the algo keys it must change (and nothing else)
ABLATIONS = {
    "full": {},
    "cmlp": {"critic": "mlp"},
    "vanilla_entropy": {"entropy": "vanilla"},
    "gumbel": {"actor_input": "gumbel"},
    "[cmlp,vanilla_entropy]": {"critic": "mlp", "entropy": "vanilla"},
    "[cmlp,vanilla_entropy,gumbel]": {"critic": "mlp", "entropy": "vanilla", "actor_input": "gumbel"},
}


# -- helpers shared with tests/test_coma.py ------------------------------------------------
def synthetic_batch(info: EnvInfo = INFO, seed: int = 0) -> EpisodeBatch:
    """Three episodes, padded to T = 4: a true terminal at t=3, a short one (2 steps,
    terminal) and one cut by the time limit; some actions unavailable; actions sampled
    from the available ones; padding zeros everywhere."""
    g = torch.Generator().manual_seed(seed)
    lengths, terminal = [4, 2, 4], [True, True, False]
    b, t, n, a = len(lengths), max(lengths), info.n_agents, info.n_actions
    dtype = torch.get_default_dtype()
    filled = torch.zeros(b, t + 1, dtype=torch.bool)
    terminated = torch.zeros(b, t, dtype=torch.bool)
    truncated = torch.zeros(b, t, dtype=torch.bool)
    avail = torch.zeros(b, t + 1, n, a, dtype=torch.bool)
    actions = torch.zeros(b, t + 1, n, dtype=torch.long)
    for i, (length, term) in enumerate(zip(lengths, terminal)):
        filled[i, : length + 1] = True
        (terminated if term else truncated)[i, length - 1] = True
        av = torch.rand(length + 1, n, a, generator=g) < 0.6
        av[..., 1] = True  # at least one available action
        avail[i, : length + 1] = av
        actions[i, : length + 1] = torch.multinomial(av.reshape(-1, a).to(dtype), 1, generator=g).view(length + 1, n)
    onehot = torch.nn.functional.one_hot(actions, a).to(dtype) * filled[..., None, None]
    reward = torch.randn(b, t, generator=g, dtype=dtype) * filled[:, 1:]
    return EpisodeBatch(obs=torch.randn(b, t + 1, n, info.obs_dim, generator=g, dtype=dtype) * filled[..., None, None],
                        state=torch.randn(b, t + 1, info.state_dim, generator=g, dtype=dtype) * filled[..., None],
                        avail=avail, actions=actions, actions_onehot=onehot, filled=filled, reward=reward,
                        terminated=terminated, truncated=truncated, env_steps=10)


def run_update(module, batch: EpisodeBatch) -> dict[str, float]:
    """``module.update(batch)`` without a Trainer: the optimisers from
    ``configure_optimizers``, plain backward, and the actor phase freezing the critic as
    Lightning's ``toggle_optimizer`` does."""
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts
    module.manual_backward = lambda loss: loss.backward()
    module.toggle_optimizer = lambda opt: module.critic.requires_grad_(False)
    module.untoggle_optimizer = lambda opt: module.critic.requires_grad_(True)
    return module.update(batch)


def algo_config(ablation: str = "full", extra: list[str] | None = None):
    """The reference code's LICA settings (algo=lica_reference: one critic step and one actor
    step per batch) with ``ablation`` applied; the update maths below is checked on these."""
    overrides = ["algo=lica_reference", f"ablation={ablation}", *(extra or [])]
    return OmegaConf.to_object(compose_config(overrides)).algo


def build(ablation: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_module(algo_config(ablation), INFO)


def diff(a: Any, b: Any, path: str = "") -> dict[str, tuple[Any, Any]]:
    """Leaf paths where two plain containers differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, tuple[Any, Any]] = {}
        for k in sorted(set(a) | set(b)):
            out.update(diff(a.get(k), b.get(k), f"{path}.{k}" if path else k))
        return out
    return {} if a == b else {path: (a, b)}


# -- composition ---------------------------------------------------------------------------
@pytest.mark.parametrize("ablation", list(ABLATIONS))
def test_ablation_changes_only_its_keys(ablation):
    default = OmegaConf.to_container(compose_config(), resolve=True)
    ablated = OmegaConf.to_container(compose_config([f"ablation={ablation}"]), resolve=True)
    expected = {f"algo.{k}": (default["algo"][k], v) for k, v in ABLATIONS[ablation].items()}
    assert diff(default, ablated) == expected


def test_ablation_coefficients_come_from_the_algo_config():
    cfg = compose_config(["ablation=vanilla_entropy", "algo.beta=0.13"])
    assert (cfg.algo.entropy, cfg.algo.beta) == ("vanilla", 0.13)
    cfg = compose_config(["ablation=gumbel", "algo.gumbel_tau=0.5"])
    assert (cfg.algo.actor_input, cfg.algo.gumbel_tau) == ("gumbel", 0.5)
    # a per-map xi from an env file survives an ablation of another component
    assert compose_config(["env=smac_5m_vs_6m", "ablation=cmlp"]).algo.entropy_coef == 0.11


# -- the built module ----------------------------------------------------------------------
@pytest.mark.parametrize("ablation", ["full", "cmlp", "vanilla_entropy", "gumbel"])
def test_ablation_switches_exactly_one_component_of_the_module(ablation, monkeypatch):
    full, module = build("full"), build(ablation)
    algo = module.algo

    # Critic class; everything else (actor, and the critic unless it is the ablated part) identical.
    assert type(module.critic) is (MLPCritic if ablation == "cmlp" else MixingCritic)
    assert type(module.target_critic) is type(module.critic)
    for name, tensor in full.actor.state_dict().items():
        torch.testing.assert_close(module.actor.state_dict()[name], tensor, rtol=0, atol=0)
    if ablation != "cmlp":
        for name, tensor in full.critic.state_dict().items():
            torch.testing.assert_close(module.critic.state_dict()[name], tensor, rtol=0, atol=0)

    # Spy on the entropy term and the critic's action input during one real update.
    seen: dict[str, Any] = {}
    orig_entropy, orig_input = lica_module.entropy_loss, lica_module.actor_critic_input

    def entropy_spy(mean_entropy, mode, coef, eps=1e-6):
        term, hit = orig_entropy(mean_entropy, mode, coef, eps)
        (grad,) = torch.autograd.grad(term, mean_entropy, retain_graph=True)
        seen.update(entropy=mean_entropy.detach().clone(), mode=mode, coef=coef, term=term.detach().clone(),
                    dterm_dH=grad)
        return term, hit

    def input_spy(logits, avail, mode, tau=1.0):
        out = orig_input(logits, avail, mode, tau)
        seen.update(input_mode=mode, input=out.detach().clone(), input_grad=out.requires_grad,
                    probs=action_distribution(logits, avail).probs.detach().clone())
        return out

    monkeypatch.setattr(lica_module, "entropy_loss", entropy_spy)
    monkeypatch.setattr(lica_module, "actor_critic_input", input_spy)
    batch = synthetic_batch()
    actor_before = copy.deepcopy(module.actor)
    metrics = run_update(module, batch)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values()), metrics

    # Entropy term: H̄ is the masked mean policy entropy of the actor before its step.
    mask, avail = batch.step_mask(), batch.avail[:, :-1]
    with torch.no_grad():
        h_bar = masked_mean(policy_entropy(actor_before.unroll(batch.obs[:, :-1], batch.actions_onehot[:, :-1]),
                                           avail), mask)
    torch.testing.assert_close(seen["entropy"], h_bar)
    if ablation == "vanilla_entropy":
        assert (seen["mode"], seen["coef"]) == ("vanilla", algo.beta)
        torch.testing.assert_close(seen["term"], -algo.beta * h_bar)  # −β·H̄ (Eq. 5)
        torch.testing.assert_close(seen["dterm_dH"], torch.full_like(h_bar, -algo.beta))
    else:
        assert (seen["mode"], seen["coef"]) == ("adaptive", algo.entropy_coef)
        torch.testing.assert_close(seen["term"], torch.full_like(h_bar, -algo.entropy_coef))  # −ξ·H̄/sg(H̄) = −ξ
        torch.testing.assert_close(seen["dterm_dH"], -algo.entropy_coef / h_bar)  # Eq. 6

    # Actor input: probabilities, or straight-through Gumbel samples (one-hot forward values).
    x, valid = seen["input"], mask[..., None].expand(-1, -1, INFO.n_agents)
    assert seen["input_grad"], "the actor input must carry the actor's gradient"
    assert not x[valid][~avail[valid]].any(), "an unavailable action reached the critic"
    if ablation == "gumbel":
        assert seen["input_mode"] == "gumbel"
        rows = x[valid]
        torch.testing.assert_close(rows.round(), rows, rtol=0, atol=1e-6)
        torch.testing.assert_close(rows.sum(-1), torch.ones(rows.shape[0], dtype=rows.dtype))
    else:
        assert seen["input_mode"] == "probs"
        torch.testing.assert_close(x, seen["probs"])
        assert (x[valid].max(-1).values < 1).any()  # genuinely soft


# -- end to end ----------------------------------------------------------------------------
def read_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))


@pytest.mark.slow
@pytest.mark.parametrize("ablation,critic_key", [("[cmlp,vanilla_entropy]", "critic.f_s.0.weight"),
                                                 ("gumbel", "critic.hyper_w1.0.weight")])
def test_ablation_run_records_its_components(tmp_path, ablation, critic_key):
    cfg = compose_config(TINY + ["rollout.num_workers=0", f"ablation={ablation}"])
    summary = train(cfg, run_dir=tmp_path)
    train_rows = [r for r in read_rows(tmp_path) if r.get("critic_loss")]
    assert len(train_rows) == 1600 // (4 * 10)
    for key in ("critic_loss", "q_taken_mean", "policy_entropy", "actor_grad_norm", "train_return_mean"):
        assert train_rows[-1][key] != "", key
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert critic_key in ckpt["state_dict"] and "target_" + critic_key in ckpt["state_dict"]

    expected = {"critic": "mix", "entropy": "adaptive", "actor_input": "probs", **ABLATIONS[ablation]}
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    for key, value in expected.items():
        assert hparams["algo"][key] == value, key  # the composed config
        assert hparams["tags"][key] == value, key  # the comparison tags (lica.loggers.run_tags)
        assert summary["tags"][key] == value, key
    assert hparams["tags"]["entropy_coef"] == (cfg.algo.beta if expected["entropy"] == "vanilla"
                                               else cfg.algo.entropy_coef)


@pytest.mark.slow
def test_multirun_over_the_ablations(tmp_path):
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "lica.train", "-m", "ablation=full,cmlp,vanilla_entropy,gumbel", *TINY,
         "rollout.num_workers=0", "trainer.max_env_steps=400", "rollout.eval_interval=200",
         f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = {}
    for job in jobs:
        assert (job / "csv" / "metrics.csv").exists()
        assert any(r.get("critic_loss") for r in read_rows(job))
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["algo"]
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        ablation = next(o.split("=", 1)[1] for o in overrides if o.startswith("ablation="))
        expected = {"critic": "mix", "entropy": "adaptive", "actor_input": "probs", **ABLATIONS[ablation]}
        assert {k: cfg[k] for k in expected} == expected, ablation
        tags = yaml.safe_load((job / "csv" / "hparams.yaml").read_text())["tags"]
        assert {k: tags[k] for k in expected} == expected, ablation
        seen[ablation] = job.name
    assert set(seen) == {"full", "cmlp", "vanilla_entropy", "gumbel"}
