"""The uniform random policy's score on an environment: the floor every return is read against.

    python -m lica.analysis.random_policy env=spread [episodes=1024] [seed=0] [<more Hydra overrides>]

Composes ``conf/train.yaml`` with the overrides (so ``env=...`` picks the task exactly as
training does), runs ``episodes`` episodes in which every agent picks uniformly among its
available actions, through the step-wise collector of training and evaluation, and prints the
mean episode return, episode length and (where the env reports them) win rate, with the
standard error of each mean.  Episode ``i`` is reset with the ``i``-th seed of
``SeedSequence([seed, 3])`` (training, evaluation and ``lica.evaluate`` use streams 0-2).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from lica.analysis import split_options
from lica.config import EnvConfig, compose
from lica.envs import make_vec_env
from lica.envs.base import EnvInfo
from lica.rollout.batch import EpisodeBatch
from lica.rollout.collector import Collector

RANDOM_STREAM = 3


class UniformPolicy(nn.Module):
    """The actor interface with all-zero logits: after the availability mask, a uniform
    choice among each agent's available actions."""

    recurrent = False

    def __init__(self, n_agents: int, n_actions: int) -> None:
        super().__init__()
        self.n_agents, self.n_actions = n_agents, n_actions

    def initial_state(self, batch: int, device: torch.device | None = None) -> Tensor:
        return torch.zeros(batch, self.n_agents, 0, device=device)

    def forward(self, obs: Tensor, last_action_onehot: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros(*obs.shape[:-1], self.n_actions), hidden


def random_episodes(env: EnvConfig, episodes: int, seed: int) -> tuple[EpisodeBatch, EnvInfo]:
    """``episodes`` episodes of the uniform policy on ``env``, through
    the collector of training; episode ``i`` is reset with the ``i``-th seed of
    ``SeedSequence([seed, 3])``."""
    vec = make_vec_env(env, episodes, 0)
    try:
        info = vec.info
        seeds = np.random.SeedSequence([seed, RANDOM_STREAM]).generate_state(episodes).astype(np.int64)
        batch = Collector(vec).collect(UniformPolicy(info.n_agents, info.n_actions), seeds,
                                       generator=torch.Generator().manual_seed(seed))
    finally:
        vec.close()
    return batch, info


def random_policy_score(overrides: list[str], episodes: int = 1024, seed: int = 0) -> dict[str, Any]:
    """Mean (and standard error) of the test metrics of the uniform policy."""
    cfg = OmegaConf.to_object(compose(overrides))
    batch, info = random_episodes(cfg.env, episodes, seed)
    stats = batch.stats
    out: dict[str, Any] = {"env": f"{cfg.env.backend}:{cfg.env.scenario}", "n_agents": info.n_agents,
                           "episode_limit": info.episode_limit, "episodes": episodes, "seed": seed}
    columns = {"return": stats.returns, "ep_length": stats.lengths.astype(float)}
    if info.reports_wins:
        columns["battle_won"] = stats.won.astype(float)
    for name, x in columns.items():
        out[f"{name}_mean"] = float(x.mean())
        out[f"{name}_sem"] = float(x.std(ddof=1) / np.sqrt(len(x)))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return 0
    options, overrides = split_options(args, {"episodes": 1024, "seed": 0})
    episodes, seed = options["episodes"], options["seed"]
    if episodes < 2:
        raise SystemExit("lica.analysis.random_policy: episodes must be >= 2")
    r = random_policy_score(overrides, episodes, seed)
    print(f"uniform random policy on {r['env']} (n={r['n_agents']}, limit {r['episode_limit']}), "
          f"{episodes} episodes, seed {seed}:")
    for name in ("return", "ep_length", "battle_won"):
        if f"{name}_mean" in r:
            print(f"   {name}: {r[f'{name}_mean']:.3f} ± {r[f'{name}_sem']:.3f} (s.e.m.)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
