"""Tests for the 1-step Traffic Junction study (paper Fig. 5, spec §8)."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from lica.analysis import traffic_junction as tj  # noqa: E402


@pytest.fixture(scope="module")
def study_256():
    return tj.run_study(256, steps=60, seed=0)


def test_reward_table():
    r = tj.reward_table()
    assert r[tj.PASS, tj.PASS] == 0 and r[tj.WAIT, tj.WAIT] == 0
    assert r[tj.PASS, tj.WAIT] == 1 and r[tj.WAIT, tj.PASS] == 1
    # joint-action listing agrees with the table; exactly two optimal joint actions
    assert torch.equal(tj.joint_rewards(), torch.tensor([0.0, 1.0, 1.0, 0.0]))
    assert torch.equal(tj.joint_action_onehots()[1], torch.tensor([1.0, 0.0, 0.0, 1.0]))


def test_coma_advantage_hand_computed():
    # Q[u1, u2] with pass = 0, wait = 1
    q = torch.tensor([[0.0, 2.0], [4.0, 1.0]])
    probs = torch.tensor([[0.25, 0.75], [0.6, 0.4]])  # π¹, π² over [pass, wait]
    u = torch.tensor([[0, 1], [1, 0]])  # (pass, wait), (wait, pass)
    q_cf = tj.counterfactual_q(q.expand(2, 2, 2), u)
    # agent 0 varies u1 with u2 fixed, agent 1 varies u2 with u1 fixed
    assert torch.equal(q_cf[0], torch.tensor([[2.0, 1.0], [0.0, 2.0]]))
    assert torch.equal(q_cf[1], torch.tensor([[0.0, 4.0], [4.0, 1.0]]))
    _, _, adv = tj.coma_advantage(q_cf, probs.expand(2, 2, 2), u)
    # u=(pass,wait): Q=2; A0 = 2 - (.25*2 + .75*1) = .75; A1 = 2 - (.6*0 + .4*2) = 1.2
    # u=(wait,pass): Q=4; A0 = 4 - (.25*0 + .75*4) = 1.0; A1 = 4 - (.6*4 + .4*1) = 1.2
    torch.testing.assert_close(adv, torch.tensor([[0.75, 1.2], [1.0, 1.2]]))


def test_coma_advantage_zero_in_expectation_at_uniform_policy():
    """Paper §5.1: at the symmetric point COMA's expected advantage is 0 for every action."""
    q = tj.reward_table()
    probs = torch.full((2, 2), 0.5)
    for u in tj.JOINT_ACTIONS:
        q_cf = tj.counterfactual_q(q, u)
        _, _, adv = tj.coma_advantage(q_cf, probs, u)
        # E_{u^{-a}}[A^a | u^a] = 0: average over the other agent's action
        assert adv.abs().max() == 0.5
    exp_adv = torch.zeros(2, 2)  # [agent, own action]
    for u in tj.JOINT_ACTIONS:
        _, _, adv = tj.coma_advantage(tj.counterfactual_q(q, u), probs, u)
        for a in range(2):
            exp_adv[a, u[a]] += 0.5 * adv[a]  # weight of the other agent's action
    assert torch.equal(exp_adv, torch.zeros(2, 2))


def test_coma_critic_learns_counterfactual_rows():
    g = torch.Generator().manual_seed(0)
    critic = tj.BatchedMLP(4, 4, 32, 2, g)
    opt = torch.optim.Adam(critic.parameters(), lr=2e-2)
    with tj.torch_threads(1):
        tj._fit_critic_coma(critic, opt, 400)
    u = tj.JOINT_ACTIONS.expand(4, -1, -1)  # (N=4, B=4, 2)
    with torch.no_grad():
        q = tj.coma_critic_q(critic, u)
    ref = tj.counterfactual_q(tj.reward_table(), tj.JOINT_ACTIONS)
    torch.testing.assert_close(q, ref.expand_as(q), atol=2e-2, rtol=0)


def test_batched_lica_matches_plain_modules():
    """The vectorised trainer = independent nn.Module runs with their own Adam."""
    n, steps, seed = 3, 15, 7
    cfg = tj.StudyConfig(steps=steps, xi=0.05)
    res = tj.train_method("lica", n, seed, cfg)
    # rebuild the same initial parameters from the same generators
    pol = tj.BatchedPolicies(n, 32, torch.Generator().manual_seed(seed))
    crit = tj.BatchedMLP(n, 4, 32, 1, torch.Generator().manual_seed(seed + 1_000_003))
    x_ids = torch.tensor([[0.0], [1.0]])
    for i in range(n):
        actors = []
        for a in range(2):
            net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU(),
                                      torch.nn.Linear(32, 1))
            with torch.no_grad():
                net[0].weight.copy_(pol.w1[i, a].T)
                net[0].bias.copy_(pol.b1[i, a])
                net[2].weight.copy_(pol.w2[i, a].T)
                net[2].bias.copy_(pol.b2[i, a])
            actors.append(net)
        critic = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(),
                                     torch.nn.Linear(32, 1))
        with torch.no_grad():
            critic[0].weight.copy_(crit.w1[i].T)
            critic[0].bias.copy_(crit.b1[i])
            critic[2].weight.copy_(crit.w2[i].T)
            critic[2].bias.copy_(crit.b2[i])
        opt_a = torch.optim.Adam([p for net in actors for p in net.parameters()], lr=1e-2)
        opt_c = torch.optim.Adam(critic.parameters(), lr=2e-2)
        xs, ys = tj.joint_action_onehots(), tj.joint_rewards()
        for _ in range(steps):
            for _ in range(5):
                opt_c.zero_grad()
                ((critic(xs)[:, 0] - ys) ** 2).mean().backward()
                opt_c.step()
            p = torch.cat([torch.sigmoid(actors[a](x_ids[a])) for a in range(2)])  # (2,)
            pi = torch.stack([p, 1 - p], -1)  # (2,2)
            ent = -(pi * pi.log()).sum(-1).mean()
            loss = -critic(pi.reshape(1, 4))[0, 0] - 0.05 * ent / ent.detach()
            opt_a.zero_grad()
            loss.backward()
            opt_a.step()
        with torch.no_grad():
            p = torch.cat([torch.sigmoid(actors[a](x_ids[a])) for a in range(2)])
        torch.testing.assert_close(res.final_p_pass[i], p, atol=1e-4, rtol=1e-4)


def test_lica_converges_more_often_than_coma(study_256):
    lica, coma = study_256["lica"], study_256["coma"]
    f_lica = lica.converged().float().mean().item()
    f_coma = coma.converged().float().mean().item()
    assert f_lica > 0.85
    assert f_lica > f_coma
    # LICA ends near-deterministic (low entropy), COMA does not
    assert lica.final_entropy.mean() < coma.final_entropy.mean()
    # both optima are found (symmetry): neither outcome takes all initialisations
    wins = (lica.final_p_pw > lica.final_p_wp).float().mean()
    assert 0.3 < wins < 0.7
    # curves: steps + 1 entries, probabilities in [0, 1]
    assert lica.mean_p_pw.shape == (61,)
    assert ((lica.mean_p_pw + lica.mean_p_wp) <= 1 + 1e-6).all()


def test_deterministic(study_256):
    again = tj.run_study(256, steps=60, seed=0)
    for m in tj.METHODS:
        a, b = study_256[m], again[m]
        for name in ("mean_p_pw", "std_p_wp", "mean_entropy", "final_p_pass", "final_p_wp"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (m, name)
    other = tj.run_study(64, steps=5, seed=1, methods=("coma",))["coma"]
    assert not torch.equal(other.final_p_pass, study_256["coma"].final_p_pass[:64])


def test_plot_has_one_band_per_method_and_outcome(study_256):
    fig, axes = tj.plot_study(study_256)
    try:
        assert len(axes) == 2
        for ax, m in zip(axes, tj.METHODS):
            r = study_256[m]
            assert tj.METHOD_LABELS[m] in ax.get_title()
            lines = ax.get_lines()
            assert [ln.get_label() for ln in lines] == [*tj.OUTCOME_LABELS, tj.SUM_LABEL]
            torch.testing.assert_close(torch.as_tensor(lines[2].get_ydata()),
                                       r.mean_p_pw + r.mean_p_wp, check_dtype=False)
            for ln, mean in zip(lines, (r.mean_p_pw, r.mean_p_wp)):
                assert len(ln.get_ydata()) == 61
                torch.testing.assert_close(torch.as_tensor(ln.get_ydata()), mean, check_dtype=False)
            bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
            assert len(bands) == 2
            for band, mean, std in zip(bands, (r.mean_p_pw, r.mean_p_wp), (r.std_p_pw, r.std_p_wp)):
                verts = torch.as_tensor(band.get_paths()[0].vertices)
                assert verts[:, 1].max() == pytest.approx(float((mean + std).max()), abs=1e-5)
                assert verts[:, 1].min() == pytest.approx(float((mean - std).min()), abs=1e-5)
    finally:
        plt.close(fig)


def test_cli_writes_png_and_json(tmp_path, capsys):
    out = tmp_path / "tj"
    summary = tj.main(["--n-inits", "64", "--steps", "20", "--out", str(out)])
    png, js = out / "traffic_junction.png", out / "summary.json"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data == json.loads(json.dumps(summary))
    for m in tj.METHODS:
        s = data["methods"][m]
        assert s["n_inits"] == 64 and s["steps"] == 20
        assert 0.0 <= s["frac_optimal_outcome_gt_0.9"] <= 1.0
        assert 0.0 <= s["mean_final_joint_entropy"] <= 2 * math.log(2.0) + 1e-6
        assert s["wall_time_s"] > 0
    assert "frac_optimal_outcome_gt_0.9" in capsys.readouterr().out
