"""lica.analysis.value_fit: the supervised check of the critic's architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lica.analysis.value_fit import ReferenceMLP, fit, main, r_squared, value_fit


def test_r_squared_matches_numpy():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=50), rng.normal(size=50)
    expected = 1 - np.mean((p - y) ** 2) / np.var(y)
    assert r_squared(torch.tensor(p), torch.tensor(y)) == pytest.approx(expected, rel=1e-12)


class StateBlind(nn.Module):
    """A constant: what any model that ignores its inputs can reach."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.zeros(1))

    def forward(self, joint_action, state):
        return self.c.expand(state.shape[0])


def test_fit_reports_train_and_held_out_r2_of_what_the_model_learned():
    """y = a smooth function of the state: the MLP fits it on cells it never saw; a
    constant reaches R² ≈ 0 on both sides (its R² is what the mean alone explains)."""
    g = torch.Generator().manual_seed(0)
    s, u = torch.randn(2000, 6, generator=g), torch.zeros(2000, 4)
    data = {"s": s, "u": u, "R": 3.0 * torch.sin(s[:, 0]) + s[:, 1] - 7.0}
    train = torch.arange(1600)
    torch.manual_seed(0)
    mlp_train, mlp_held_out = fit(ReferenceMLP(6, 4), data, train, 150, 3e-3, g)
    assert mlp_train > 0.9 and mlp_held_out > 0.8
    blind_train, blind_held_out = fit(StateBlind(), data, train, 100, 5e-2, g)
    assert abs(blind_train) < 0.02 and abs(blind_held_out) < 0.05


def test_value_fit_builds_the_configs_critic_and_cli_reports_both(capsys):
    overrides = ["env=spread", "env.n_agents=2", "env.episode_limit=6", "algo.hypernet_embed=16"]
    results = value_fit(overrides, episodes=20, steps=20, first=4)
    assert set(results) == {"critic", "mlp"} and all(np.isfinite(v).all() for v in results.values())
    assert main([*overrides, "episodes=20", "steps=20", "first=4"]) == 0
    out = capsys.readouterr().out
    assert "steps t < 4, 20 episodes" in out and "critic  train" in out and "mlp     train" in out
    with pytest.raises(SystemExit, match="episodes >= 5"):
        main(["env=spread", "episodes=2"])
    with pytest.raises(SystemExit, match="checks LICA's critic"):
        value_fit(["env=spread", "algo=coma"], episodes=5, steps=1)
