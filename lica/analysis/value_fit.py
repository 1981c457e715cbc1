"""Can the critic represent the value? A supervised check of LICA's critic architecture.

    python -m lica.analysis.value_fit env=spread5 [episodes=2048] [steps=3000] [first=15] [lr=0.001] [seed=0] [<Hydra overrides>]

Composes ``conf/train.yaml`` with the overrides (so ``env=...`` and ``algo.*`` build the
critic exactly as training does), collects ``episodes`` episodes of the uniform random
policy, and regresses the realised discounted return-to-go ``R_t = Σ_k γ^k r_{t+k}`` (the
config's γ; no bootstrapping) on (state, one-hot joint action) at the steps ``t < first``,
where the time limit cuts little of it.  Two models learn the same data with the same
recipe (Adam at ``lr``, minibatches of 512 cells, ``steps`` steps, targets standardised
on the training cells): the config's critic (C_Mix, Eq. 1, or C_MLP) and a reference MLP
(state ⊕ joint action → 256 → 256 → 1).  Episodes are split 80 / 20 into training and
held-out ones; the R² of each model on both is printed.  A critic that fits its training
cells but not the held-out ones cannot give the actor a useful ∂Q/∂π on new states, whatever
its TD targets (docs/learning.md, "spread5").
"""

from __future__ import annotations

import sys

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from lica.algos.losses import discounted_returns
from lica.analysis import split_options
from lica.analysis.random_policy import random_episodes
from lica.config import compose

MINIBATCH = 512


class ReferenceMLP(nn.Module):
    """state ⊕ joint action → 256 → 256 → 1, ReLU: the yardstick of the check."""

    def __init__(self, state_dim: int, action_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim + action_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                 nn.Linear(256, 1))

    def forward(self, joint_action: Tensor, state: Tensor) -> Tensor:
        return self.net(torch.cat([state, joint_action], -1)).squeeze(-1)


def r_squared(pred: Tensor, target: Tensor) -> float:
    """``1 − mean((pred − target)²) / var(target)``."""
    return float(1 - (pred - target).pow(2).mean() / target.var(unbiased=False))


def fit(model: nn.Module, data: dict[str, Tensor], train: Tensor, steps: int, lr: float,
        generator: torch.Generator) -> tuple[float, float]:
    """Train ``model(u, s) ≈ R`` on the ``train`` cells; R² on the training and the other cells."""
    u, s, y = data["u"], data["s"], data["R"]
    mean, std = y[train].mean(), y[train].std().clamp_min(1e-8)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        i = train[torch.randint(len(train), (MINIBATCH,), generator=generator)]
        loss = (model(u[i], s[i]).reshape(-1) - (y[i] - mean) / std).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    held_out = torch.ones(len(y), dtype=torch.bool)
    held_out[train] = False
    with torch.no_grad():
        pred = model(u, s).reshape(-1) * std + mean
    return r_squared(pred[train], y[train]), r_squared(pred[held_out], y[held_out])


def value_fit(overrides: list[str], episodes: int = 2048, steps: int = 3000, first: int = 15, lr: float = 1e-3,
              seed: int = 0) -> dict[str, tuple[float, float]]:
    """``{"critic": (train R², held-out R²), "mlp": (...)}`` for the composed config."""
    from lica.algos.lica import LICA  # Lightning: imported only when a fit runs

    cfg = OmegaConf.to_object(compose(overrides))
    if cfg.algo.name != "lica":
        raise SystemExit(f"lica.analysis.value_fit checks LICA's critic; got algo={cfg.algo.name}.")
    batch, info = random_episodes(cfg.env, episodes, seed)
    keep = batch.step_mask().bool()  # (B, T): the transitions, whose state is state[:, :-1]
    returns = discounted_returns(batch.reward, keep, cfg.algo.gamma)
    keep[:, first:] = False
    episode = torch.arange(episodes)[:, None].expand_as(keep)[keep]
    data = {"s": batch.state[:, :-1][keep], "u": batch.actions_onehot[:, :-1][keep].flatten(-2), "R": returns[keep]}
    generator = torch.Generator().manual_seed(seed)
    train_episodes = torch.randperm(episodes, generator=generator)[: int(0.8 * episodes)]
    train = torch.nonzero(torch.isin(episode, train_episodes)).squeeze(-1)
    results = {}
    for name in ("critic", "mlp"):
        torch.manual_seed(seed)
        model = (LICA(cfg.algo, info).critic if name == "critic"
                 else ReferenceMLP(info.state_dim, info.n_agents * info.n_actions))
        results[name] = fit(model, data, train, steps, lr, generator)
    return results


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    options, overrides = split_options(args, {"episodes": 2048, "steps": 3000, "first": 15, "lr": 1e-3, "seed": 0})
    if options["episodes"] < 5 or options["steps"] < 1 or options["first"] < 1 or options["lr"] <= 0:
        raise SystemExit("lica.analysis.value_fit: needs episodes >= 5, steps >= 1, first >= 1 and lr > 0")
    torch.set_num_threads(1)
    results = value_fit(overrides, **options)
    print(f"R² of the random policy's discounted return-to-go (steps t < {options['first']}, "
          f"{options['episodes']} episodes, 20 % held out), {options['steps']} Adam steps:")
    for name, (train, held_out) in results.items():
        print(f"   {name:6s}  train {train:.3f}   held-out {held_out:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
