"""1-step Traffic Junction: LICA vs COMA (paper Fig. 5, spec §8).

Zhou et al., "Learning Implicit Credit Assignment for Cooperative Multi-Agent
Reinforcement Learning", NeurIPS 2020, Fig. 5.

Game
----
Two agents, actions ``{pass, wait}``, a single state.  The shared reward is 1 iff
exactly one agent passes, else 0, so there are two optimal joint actions,
``(pass, wait)`` and ``(wait, pass)``, and a symmetric saddle between them.

Setup (the authors' toy)
------------------------
* Policies: one network per agent (or one shared network, ``shared_policy``),
  ``Linear(1, 32) -> ReLU -> Linear(32, 1) -> sigmoid`` = P(pass); the input is the
  agent id (``agent_inputs``, default ``(0., 1.)``).
* LICA critic: with one state the mixing critic ``C_Mix`` (Eq. 1) reduces to an MLP
  on the joint action vector ``[π¹(pass), π¹(wait), π²(pass), π²(wait)]``:
  ``Linear(4, 32) -> ReLU -> Linear(32, 1)``.  It is fitted by MSE to the true
  rewards of the 4 one-hot joint actions, ``critic_steps`` (k = 5) Adam steps per
  iteration (the critic step comes first, spec §4).
* LICA actor (Eq. 4): the action-probability vectors are fed to the freshly updated
  critic and the actor maximises ``Q(s, π¹, π²)``, i.e. minimises
  ``-Q(s, π¹, π²) - ξ·H̄/stopgrad(H̄)`` (adaptive entropy, Eq. 5-6; ``ξ = 0`` here by
  default, as in Fig. 5).
* COMA (Foerster et al., AAAI 2018): a COMA critic for 2 agents with 2 actions,
  input ``[onehot(u^{-a}), onehot(a)]`` -> ``Linear(4, 32) -> ReLU -> Linear(32, 2)``
  giving ``Q(s, (u^{-a}, u'))`` for all of agent a's actions ``u'`` in one pass,
  fitted the same way on the 4 joint actions.  Actors sample joint actions
  (``coma_batch`` per step) and follow the counterfactual policy gradient with
  advantage ``A^a(s, u) = Q(s, u) - Σ_{u'} π^a(u'|τ^a) Q(s, (u^{-a}, u'))``
  (COMA Eq. 4) and loss ``-A^a · log π^a(u^a)``.
* Adam everywhere: policy lr 1e-2, critic lr 2e-2; ``steps = 60`` training steps
  from every random initialisation.

Vectorisation
-------------
All ``N`` initialisations are trained at once: every parameter is a tensor with a
leading ``N`` axis and the networks are hand-written batched matmuls.  Each loss is a
*sum* over initialisations, so every initialisation receives exactly the gradient it
would receive on its own, and one ``torch.optim.Adam`` over the stacked tensors is
the same as ``N`` independent Adams (Adam is elementwise).  All randomness comes from
seeded ``torch.Generator`` objects, so a run is deterministic.

CLI::

    python -m lica.analysis.traffic_junction --n-inits 20000 --out outputs/traffic_junction
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from lica.algos.losses import coma_advantage

PASS, WAIT = 0, 1
ACTION_NAMES = ("pass", "wait")
N_AGENTS, N_ACTIONS = 2, 2
METHODS = ("lica", "coma")
METHOD_LABELS = {"lica": "LICA", "coma": "COMA"}
OUTCOME_LABELS = ("P(pass, wait)", "P(wait, pass)")
SUM_LABEL = "P(pass, wait) + P(wait, pass)"

# the 4 joint actions (u1, u2), row-major over (u1, u2)
JOINT_ACTIONS = torch.tensor([[PASS, PASS], [PASS, WAIT], [WAIT, PASS], [WAIT, WAIT]])


# --------------------------------------------------------------------------- game
def reward_table(dtype: torch.dtype = torch.float32) -> Tensor:
    """R[u1, u2]: 1 iff exactly one agent passes, else 0 (spec §8)."""
    r = torch.zeros(N_ACTIONS, N_ACTIONS, dtype=dtype)
    r[PASS, WAIT] = 1.0
    r[WAIT, PASS] = 1.0
    return r


def joint_action_onehots(dtype: torch.dtype = torch.float32) -> Tensor:
    """(4, 4): agent-major one-hot vectors [u1 one-hot, u2 one-hot] of the joint actions."""
    oh = torch.nn.functional.one_hot(JOINT_ACTIONS, N_ACTIONS).to(dtype)  # (4, 2, 2)
    return oh.reshape(len(JOINT_ACTIONS), N_AGENTS * N_ACTIONS)


def joint_rewards(dtype: torch.dtype = torch.float32) -> Tensor:
    """(4,): reward of each row of ``JOINT_ACTIONS``."""
    r = reward_table(dtype)
    return r[JOINT_ACTIONS[:, 0], JOINT_ACTIONS[:, 1]]


# ------------------------------------------------------------- COMA advantage
def counterfactual_q(q_joint: Tensor, actions: Tensor) -> Tensor:
    """Counterfactual Q rows from a joint Q table (2 agents).

    ``q_joint[..., u1, u2]`` and taken ``actions[..., 2]`` -> ``(..., 2, 2)`` whose entry
    ``[a, u']`` is ``Q(s, (u^{-a}, u'))``: agent a's action replaced by ``u'``, the other
    agent's action kept.  This is what the COMA critic outputs for agent a.
    """
    q_joint = q_joint.expand(*actions.shape[:-1], N_ACTIONS, N_ACTIONS)  # broadcast a shared table
    u1, u2 = actions[..., 0], actions[..., 1]
    # agent 0 varies u1 with u2 fixed; agent 1 varies u2 with u1 fixed
    q0 = torch.gather(q_joint, -1, u2[..., None, None].expand(*u2.shape, N_ACTIONS, 1)).squeeze(-1)
    q1 = torch.gather(q_joint, -2, u1[..., None, None].expand(*u1.shape, 1, N_ACTIONS)).squeeze(-2)
    return torch.stack([q0, q1], dim=-2)


# ------------------------------------------------------------- batched nets
def _uniform(shape: tuple[int, ...], bound: float, gen: torch.Generator) -> Tensor:
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


def _linear_params(n: int, lead: tuple[int, ...], fan_in: int, fan_out: int,
                   gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """PyTorch's default ``nn.Linear`` init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), batched."""
    bound = 1.0 / math.sqrt(fan_in)
    w = _uniform((n, *lead, fan_in, fan_out), bound, gen).requires_grad_()
    b = _uniform((n, *lead, fan_out), bound, gen).requires_grad_()
    return w, b


class BatchedPolicies:
    """``N`` independent copies of the per-agent policies ``Linear(1,H)-ReLU-Linear(H,1)-sigmoid``.

    Parameters have shape ``(N, P, ...)`` with ``P = 2`` (one network per agent) or
    ``P = 1`` (shared network; the agent id input tells the agents apart).
    """

    def __init__(self, n: int, hidden: int, gen: torch.Generator, shared: bool = False,
                 agent_inputs: tuple[float, float] = (0.0, 1.0)) -> None:
        p = 1 if shared else N_AGENTS
        self.w1, self.b1 = _linear_params(n, (p,), 1, hidden, gen)  # (N,P,1,H), (N,P,H)
        self.w2, self.b2 = _linear_params(n, (p,), hidden, 1, gen)  # (N,P,H,1), (N,P,1)
        self.x = torch.tensor(agent_inputs, dtype=torch.float32)  # (2,)

    def parameters(self) -> list[Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]

    def logits(self) -> Tensor:
        """(N, 2) logits of P(pass) for both agents."""
        h = torch.relu(self.x[None, :, None] * self.w1[:, :, 0, :] + self.b1)  # (N,2,H)
        return (h * self.w2[..., 0]).sum(-1) + self.b2[..., 0]  # (N,2)


class BatchedMLP:
    """``N`` independent ``Linear(in,H) -> ReLU -> Linear(H,out)`` critics, forward ``(N,B,in)``."""

    def __init__(self, n: int, n_in: int, hidden: int, n_out: int, gen: torch.Generator) -> None:
        self.w1, self.b1 = _linear_params(n, (), n_in, hidden, gen)  # (N,in,H), (N,H)
        self.w2, self.b2 = _linear_params(n, (), hidden, n_out, gen)  # (N,H,out), (N,out)

    def parameters(self) -> list[Tensor]:
        return [self.w1, self.b1, self.w2, self.b2]

    def __call__(self, x: Tensor) -> Tensor:
        h = torch.relu(torch.baddbmm(self.b1[:, None, :], x, self.w1))  # (N,B,H)
        return torch.baddbmm(self.b2[:, None, :], h, self.w2)  # (N,B,out)


def _policy_stats(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """probs (N,2,2) over [pass, wait], log-probs (N,2,2), per-agent entropy (N,2) in nats."""
    logp = torch.stack([torch.nn.functional.logsigmoid(logits),
                        torch.nn.functional.logsigmoid(-logits)], dim=-1)
    probs = logp.exp()
    ent = -(probs * logp).sum(-1)
    return probs, logp, ent


def _set_grads(params: list[Tensor], loss: Tensor) -> None:
    """Gradients of ``loss`` w.r.t. ``params`` only (nothing leaks into other nets)."""
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads):
        p.grad = g


# ------------------------------------------------------------- results
@dataclass
class MethodResult:
    """Per-method study output. Curves have ``steps + 1`` entries (index 0 = before training)."""

    method: str
    mean_p_pw: Tensor  # P(pass, wait): mean over inits per step
    std_p_pw: Tensor
    mean_p_wp: Tensor  # P(wait, pass)
    std_p_wp: Tensor
    mean_entropy: Tensor  # joint-policy entropy H(π¹) + H(π²) (nats)
    std_entropy: Tensor
    final_p_pass: Tensor  # (N, 2) final P(pass) per agent
    final_p_pw: Tensor  # (N,)
    final_p_wp: Tensor  # (N,)
    final_entropy: Tensor  # (N,)
    wall_time_s: float
    threshold: float = 0.9

    @property
    def n_inits(self) -> int:
        return int(self.final_p_pw.shape[0])

    def converged(self) -> Tensor:
        """(N,) bool: max(P(pass,wait), P(wait,pass)) > threshold at the last step."""
        return torch.maximum(self.final_p_pw, self.final_p_wp) > self.threshold

    def summary(self) -> dict:
        p_opt = self.final_p_pw + self.final_p_wp
        return {
            "n_inits": self.n_inits,
            "steps": int(self.mean_p_pw.shape[0] - 1),
            f"frac_optimal_outcome_gt_{self.threshold}": float(self.converged().float().mean()),
            f"frac_p_optimal_sum_gt_{self.threshold}":
                float((p_opt > self.threshold).float().mean()),
            "frac_pass_wait_wins": float((self.converged() & (self.final_p_pw > self.final_p_wp))
                                         .float().mean()),
            "mean_final_p_pass_wait": float(self.mean_p_pw[-1]),
            "mean_final_p_wait_pass": float(self.mean_p_wp[-1]),
            "mean_final_p_optimal": float(p_opt.mean()),
            "mean_final_joint_entropy": float(self.final_entropy.mean()),
            "wall_time_s": round(self.wall_time_s, 3),
        }


@dataclass
class StudyConfig:
    """Hyper-parameters of the toy study (defaults = the authors' toy setup)."""

    steps: int = 60
    hidden: int = 32
    policy_lr: float = 1e-2
    critic_lr: float = 2e-2
    critic_steps: int = 5  # k critic updates per iteration
    xi: float = 0.0  # LICA adaptive-entropy coefficient (Eq. 5-6); 0 in Fig. 5
    entropy_eps: float = 1e-8  # guard for H̄ -> 0 in the adaptive term
    coma_batch: int = 1  # sampled joint actions per COMA step
    shared_policy: bool = False
    agent_inputs: tuple[float, float] = (0.0, 1.0)
    threshold: float = 0.9


# ------------------------------------------------------------- training
def _fit_critic_lica(critic: BatchedMLP, opt: torch.optim.Optimizer, steps: int) -> None:
    """MSE on the 4 one-hot joint actions against the true rewards, ``steps`` Adam steps."""
    n = critic.w1.shape[0]
    x = joint_action_onehots().expand(n, -1, -1)  # (N,4,4)
    y = joint_rewards()  # (4,)
    for _ in range(steps):
        q = critic(x)[..., 0]  # (N,4)
        loss = ((q - y) ** 2).mean(-1).sum()
        _set_grads(critic.parameters(), loss)
        opt.step()


def _coma_critic_inputs(other_actions: Tensor, agent_ids: Tensor) -> Tensor:
    """COMA critic input ``[onehot(u^{-a}), onehot(a)]`` (spec's single state is omitted)."""
    f = torch.nn.functional.one_hot
    return torch.cat([f(other_actions, N_ACTIONS), f(agent_ids, N_AGENTS)], -1).float()


def _coma_training_set() -> tuple[Tensor, Tensor, Tensor]:
    """All (joint action, agent) pairs: inputs (8,4), own-action index (8,), reward (8,)."""
    ja = JOINT_ACTIONS.repeat_interleave(N_AGENTS, 0)  # (8,2)
    a = torch.arange(N_AGENTS).repeat(len(JOINT_ACTIONS))  # (8,)
    own = ja.gather(1, a[:, None])[:, 0]
    other = ja.gather(1, (1 - a)[:, None])[:, 0]
    r = reward_table()[ja[:, 0], ja[:, 1]]
    return _coma_critic_inputs(other, a), own, r


def _fit_critic_coma(critic: BatchedMLP, opt: torch.optim.Optimizer, steps: int) -> None:
    """Same protocol for the COMA critic: every agent's view of all 4 joint actions."""
    n = critic.w1.shape[0]
    x, own, y = _coma_training_set()
    x = x.expand(n, -1, -1)
    for _ in range(steps):
        q = critic(x).gather(-1, own.expand(n, -1)[..., None])[..., 0]  # (N,8)
        loss = ((q - y) ** 2).mean(-1).sum()
        _set_grads(critic.parameters(), loss)
        opt.step()


def coma_critic_q(critic: BatchedMLP, actions: Tensor) -> Tensor:
    """COMA critic rows ``Q(s, (u^{-a}, u'))``, shape ``(N,B,2,2)``, for sampled ``(N,B,2)``."""
    n, b, _ = actions.shape
    other = actions.flip(-1)  # u^{-a} for a = 0, 1
    ids = torch.arange(N_AGENTS).expand(n, b, -1)
    x = _coma_critic_inputs(other, ids).reshape(n, b * N_AGENTS, -1)
    return critic(x).reshape(n, b, N_AGENTS, N_ACTIONS)


def _lica_actor_loss(critic: BatchedMLP, probs: Tensor, ent: Tensor, xi: float,
                     eps: float) -> Tensor:
    """LICA actor loss (paper Eq. 4 with the adaptive entropy of Eq. 5-6), summed over inits.

    ``L = -Q(s, π¹, π²) - ξ · H̄ / stopgrad(H̄)``, ``H̄`` = mean entropy over agents.
    The probability vectors (not samples) enter the critic, so ∂Q/∂π flows to the policies.
    """
    n = probs.shape[0]
    q = critic(probs.reshape(n, 1, N_AGENTS * N_ACTIONS))[:, 0, 0]  # (N,)
    loss = -q.sum()
    if xi:
        h = ent.mean(-1)
        loss = loss - xi * (h / h.detach().clamp_min(eps)).sum()
    return loss


def _coma_actor_loss(critic: BatchedMLP, probs: Tensor, logp: Tensor, batch: int,
                     gen: torch.Generator) -> Tensor:
    """COMA actor loss ``-A^a(s,u) · log π^a(u^a)``, mean over sampled joint actions."""
    n = probs.shape[0]
    with torch.no_grad():
        u = (torch.rand(n, batch, N_AGENTS, generator=gen) >= probs[:, None, :, PASS]).long()
        _, _, adv = coma_advantage(coma_critic_q(critic, u), probs[:, None].detach(), u)  # (N,B,2)
    logp_taken = logp[:, None].expand(-1, batch, -1, -1).gather(-1, u[..., None])[..., 0]
    return -(adv * logp_taken).mean(1).sum()


def train_method(method: str, n_inits: int, seed: int = 0,
                 cfg: StudyConfig | None = None) -> MethodResult:
    """Train ``n_inits`` independent (policies, critic) pairs with ``method`` for ``cfg.steps``.

    Policy initialisations depend only on ``seed`` (so LICA and COMA start from the same
    policies); critic init and COMA's action samples use their own seeded generators.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    cfg = cfg or StudyConfig()
    t0 = time.perf_counter()
    g_pol = torch.Generator().manual_seed(seed)
    g_crit = torch.Generator().manual_seed(seed + 1_000_003)
    g_samp = torch.Generator().manual_seed(seed + 2_000_003)
    pol = BatchedPolicies(n_inits, cfg.hidden, g_pol, cfg.shared_policy, cfg.agent_inputs)
    n_out = 1 if method == "lica" else N_ACTIONS
    critic = BatchedMLP(n_inits, N_AGENTS * N_ACTIONS, cfg.hidden, n_out, g_crit)
    opt_pol = torch.optim.Adam(pol.parameters(), lr=cfg.policy_lr)
    opt_crit = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    fit = _fit_critic_lica if method == "lica" else _fit_critic_coma

    p_pw, p_wp, ents = [], [], []

    def record() -> Tensor:
        with torch.no_grad():
            probs, _, ent = _policy_stats(pol.logits())
            p1, p2 = probs[:, 0, PASS], probs[:, 1, PASS]
            p_pw.append(p1 * (1 - p2))
            p_wp.append((1 - p1) * p2)
            ents.append(ent.sum(-1))
            return probs[..., PASS]

    final_p_pass = record()
    for _ in range(cfg.steps):
        fit(critic, opt_crit, cfg.critic_steps)  # critic first (spec §4)
        probs, logp, ent = _policy_stats(pol.logits())
        if method == "lica":
            loss = _lica_actor_loss(critic, probs, ent, cfg.xi, cfg.entropy_eps)
        else:
            loss = _coma_actor_loss(critic, probs, logp, cfg.coma_batch, g_samp)
        _set_grads(pol.parameters(), loss)  # only the actor optimiser steps here
        opt_pol.step()
        final_p_pass = record()

    pw, wp, en = torch.stack(p_pw), torch.stack(p_wp), torch.stack(ents)  # (T+1, N)
    return MethodResult(
        method=method,
        mean_p_pw=pw.mean(1), std_p_pw=pw.std(1, correction=0),
        mean_p_wp=wp.mean(1), std_p_wp=wp.std(1, correction=0),
        mean_entropy=en.mean(1), std_entropy=en.std(1, correction=0),
        final_p_pass=final_p_pass, final_p_pw=pw[-1], final_p_wp=wp[-1], final_entropy=en[-1],
        wall_time_s=time.perf_counter() - t0, threshold=cfg.threshold,
    )


@contextmanager
def torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (``None`` = leave it alone)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_study(n_inits: int, steps: int = 60, seed: int = 0,
              methods: tuple[str, ...] = METHODS, num_threads: int | None = 1,
              **kwargs) -> dict[str, MethodResult]:
    """Fig. 5 study: train every method from ``n_inits`` random initialisations.

    ``kwargs`` override :class:`StudyConfig` fields (``xi``, ``coma_batch``, ``policy_lr``, ...).
    ``num_threads`` (default 1, restored afterwards): torch's intra-op threads for the
    study's many small batched matmuls (one is fastest on small CPUs: docs/performance.md).
    Returns ``{method: MethodResult}``.
    """
    cfg = StudyConfig(steps=steps, **kwargs)
    with torch_threads(num_threads):
        return {m: train_method(m, n_inits, seed, cfg) for m in methods}


def summarize(results: dict[str, MethodResult]) -> dict[str, dict]:
    return {m: r.summary() for m, r in results.items()}


# ------------------------------------------------------------- plotting / CLI
def plot_study(results: dict[str, MethodResult], path: str | Path | None = None):
    """Fig. 5-style plot: one subplot per method, mean ± std band over initialisations
    of P(pass, wait) and P(wait, pass) vs training step (plus the mean of their sum,
    dashed, no band). Returns ``(fig, axes)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.0 * len(results), 3.8),
                             sharey=True, squeeze=False)
    axes = axes[0]
    colors = ("tab:blue", "tab:orange")
    for ax, (method, r) in zip(axes, results.items()):
        steps = torch.arange(r.mean_p_pw.shape[0]).numpy()
        for label, mean, std, c in zip(OUTCOME_LABELS, (r.mean_p_pw, r.mean_p_wp),
                                       (r.std_p_pw, r.std_p_wp), colors):
            m, s = mean.numpy(), std.numpy()
            ax.plot(steps, m, color=c, label=label)
            ax.fill_between(steps, m - s, m + s, color=c, alpha=0.2, label=f"{label} ± std")
        # the two outcomes are symmetric, so their means sit near each other; the sum shows
        # how much probability mass is on *an* optimum
        ax.plot(steps, (r.mean_p_pw + r.mean_p_wp).numpy(), color="k", ls="--", lw=1,
                label=SUM_LABEL)
        ax.set_title(f"{METHOD_LABELS.get(method, method)} (N={r.n_inits})")
        ax.set_xlabel("training step")
        ax.set_xlim(0, steps[-1])
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability of optimal joint action")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("1-step Traffic Junction: mean ± std over initialisations")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig, axes


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-inits", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=str, default="outputs/traffic_junction")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--xi", type=float, default=0.0, help="LICA adaptive-entropy coefficient")
    ap.add_argument("--coma-batch", type=int, default=1, help="sampled joint actions per COMA step")
    ap.add_argument("--policy-lr", type=float, default=1e-2)
    ap.add_argument("--critic-lr", type=float, default=2e-2)
    ap.add_argument("--critic-steps", type=int, default=5)
    ap.add_argument("--shared-policy", action="store_true")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads during training (0 = torch default)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    kw = dict(xi=args.xi, coma_batch=args.coma_batch, policy_lr=args.policy_lr,
              critic_lr=args.critic_lr, critic_steps=args.critic_steps,
              shared_policy=args.shared_policy)
    results = run_study(args.n_inits, steps=args.steps, seed=args.seed,
                        methods=tuple(args.methods), num_threads=args.threads or None, **kw)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, _ = plot_study(results, out / "traffic_junction.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    summary = {
        "config": {**asdict(StudyConfig(steps=args.steps, **kw)), "n_inits": args.n_inits,
                   "seed": args.seed, "threads": args.threads},
        "methods": summarize(results),
        "total_wall_time_s": round(time.perf_counter() - t0, 3),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["methods"], indent=2))
    print(f"wrote {out / 'traffic_junction.png'} and {out / 'summary.json'} "
          f"({summary['total_wall_time_s']:.1f}s)")
    return summary


if __name__ == "__main__":
    main()
