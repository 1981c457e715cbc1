"""Paper-style comparison figures from a multirun folder, without W&B.

    python -m lica.plot outputs/multiruns/<date>/<time>_<name> [--metric test_return_mean] [--out DIR] [--no-entropy]

Reads every job of the folder (:func:`lica.runs.load_runs`: config, ``csv/metrics.csv``,
variant as defined in :mod:`lica.variants`, status), aligns the seeds of each variant on
a common env-step grid (the union of their logged env steps over the span every seed
covers, linear interpolation) and draws, as in the paper, one panel per environment:

* ``<metric>.png`` / ``.pdf`` -- the median over seeds with markers at the evaluation
  points, and the 25th-75th percentile band where a variant has at least 3 seeds (Fig. 4);
* ``policy_entropy.png`` / ``.pdf`` -- the entropy trajectories of the same variants in
  nats, with the maximum ln|A| (uniform policy) drawn as a line (Fig. 2b-c).

Failed and unfinished runs are left out of the curves and named in a note under the figure
and in the messages.  :func:`plot_multirun` returns the figures and the curves they were
drawn from (:class:`Curve`), so the numbers can be checked.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lica.runs import RunRecord, RunsError, by_variant, check_metric, finished, load_runs

ENTROPY_METRIC = "policy_entropy"
MIN_SEEDS_FOR_BAND = 3
TEXT_CHARS_PER_PANEL = 60  # the title and the note wrap to fit a 5.4-inch panel per env
FORMATS = ("png", "pdf")
# y-axis titles: what is measured and in which unit
METRIC_LABELS = {
    "test_return_mean": "test return (team reward summed over an episode)",
    "test_battle_won_mean": "test win rate (fraction of episodes won)",
    "test_ep_length_mean": "test episode length (steps)",
    "policy_entropy": "policy entropy (nats)",
    "train_return_mean": "training return (team reward summed over an episode)",
    "critic_loss": "critic loss (mean squared TD(λ) error)",
    "critic_bias": "critic bias: mean Q(s,u) − realised discounted return",
    "critic_return_corr": "correlation of Q(s,u) with the realised return",
    "td_error_abs": "mean |TD error| before the critic steps",
    "actor_q_grad_norm": "‖∂Q(s,π)/∂logits‖ (the critic's pull on the actor)",
    "actor_entropy_grad_norm": "‖∂(entropy term)/∂logits‖",
}
# The critic's health (docs/algorithm.md §3): drawn when the runs logged them
HEALTH_METRICS = ("critic_bias", "critic_return_corr", "td_error_abs", "actor_q_grad_norm",
                  "actor_entropy_grad_norm")


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


# -- aggregation -----------------------------------------------------------------------
@dataclass
class Curve:
    """One variant's finished seeds on a common env-step grid: median and quartiles."""

    label: str
    env: str
    variant_id: str
    steps: np.ndarray
    median: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    seeds: list[Any]
    runs: list[Path] = field(default_factory=list)
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # where the policy was tested

    @property
    def n_seeds(self) -> int:
        return len(self.runs)

    @property
    def has_band(self) -> bool:
        return self.n_seeds >= MIN_SEEDS_FOR_BAND


def aggregate(runs: Sequence[RunRecord], metric: str, messages: list[str] | None = None) -> list[Curve]:
    """One :class:`Curve` per variant with finished runs: the seeds interpolated onto the
    union of their env steps within the span all of them cover, then median and
    25th/75th percentiles."""
    check_metric(runs, metric)
    messages = messages if messages is not None else []
    curves = []
    for members in by_variant(finished(runs)).values():
        variant = members[0].variant
        series = [m.series(metric) for m in members]
        start, end = max(s[0][0] for s in series), min(s[0][-1] for s in series)
        grid = np.unique(np.concatenate([s[0][(s[0] >= start) & (s[0] <= end)] for s in series]))
        values = np.stack([np.interp(grid, steps, vals) for steps, vals in series])
        q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
        evals = np.unique(np.concatenate([m.series("test_return_mean")[0] for m in members]))
        if len(members) < MIN_SEEDS_FOR_BAND:
            where = "" if variant.env in variant.label else f" ({variant.env})"
            messages.append(f"note: {variant.label}{where} has {len(members)} finished seed(s): "
                            f"median line only, no quartile band (needs {MIN_SEEDS_FOR_BAND})")
        curves.append(Curve(label=variant.label, env=variant.env, variant_id=variant.id, steps=grid,
                            median=median, q1=q1, q3=q3, seeds=[m.seed for m in members],
                            runs=[m.path for m in members], eval_steps=evals[(evals >= start) & (evals <= end)]))
    return curves


def excluded_runs(runs: Sequence[RunRecord]) -> list[str]:
    """One line per run left out of the statistics (failed or unfinished)."""
    return [r.describe_exclusion() for r in runs if r.status != "finished"]


def max_entropy(runs: Sequence[RunRecord], env: str) -> float | None:
    """ln|A| of ``env`` (nats): the entropy of the uniform policy, the upper bound of the
    per-agent policy entropy; from the runs' ``summary.json`` (None if not recorded)."""
    sizes = {r.summary.get("env_info", {}).get("n_actions") for r in finished(runs) if r.variant.env == env}
    sizes.discard(None)
    return math.log(max(sizes)) if sizes else None


# -- figures ---------------------------------------------------------------------------
def plot_curves(curves: Sequence[Curve], metric: str, colors: dict[str, str] | None = None,
                runs: Sequence[RunRecord] = (), note: str = "") -> Any:
    """A matplotlib Figure: one panel per env, a median line per variant with markers
    at the evaluation points, its quartile band when it has >= 3 seeds; for the policy
    entropy, the maximum ln|A|; ``note`` (excluded runs) under the panels."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    envs = sorted({c.env for c in curves})
    colors = colors or _colors(curves)
    width = TEXT_CHARS_PER_PANEL * len(envs)
    note = "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in note.splitlines())
    fig = Figure(figsize=(5.4 * len(envs), 4.2 + 0.18 * note.count("\n")), layout="constrained")
    axes = fig.subplots(1, len(envs), squeeze=False)[0]
    for ax, env in zip(axes, envs):
        for c in (c for c in curves if c.env == env):
            color = colors[c.label]
            marks = np.flatnonzero(np.isin(c.steps, c.eval_steps)).tolist()
            ax.plot(c.steps, c.median, color=color, linewidth=1.8, marker="o", markersize=3.5, markevery=marks,
                    label=f"{c.label} ({c.n_seeds} seed{'s' if c.n_seeds != 1 else ''})")
            if c.has_band:
                ax.fill_between(c.steps, c.q1, c.q3, color=color, alpha=0.22, linewidth=0)
        if metric == ENTROPY_METRIC and (top := max_entropy(runs, env)) is not None:
            ax.axhline(top, color="0.3", linestyle="--", linewidth=1,
                       label=f"maximum ln|A| = {top:.2f} nats (uniform policy)")
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(metric_label(metric))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    title = (f"{metric_label(metric)} vs environment steps: median over seeds (markers: evaluations), "
             f"band: 25th-75th percentile where >= {MIN_SEEDS_FOR_BAND} seeds")
    fig.suptitle(textwrap.fill(title, width), fontsize="medium")
    if note:
        fig.supxlabel(note, fontsize="small", ha="left", x=0.01, color="0.3")
    return fig


def _colors(curves: Sequence[Curve]) -> dict[str, str]:
    return {label: f"C{i}" for i, label in enumerate(dict.fromkeys(c.label for c in curves))}


@dataclass
class PlotResult:
    figures: dict[str, Any]  # metric -> matplotlib Figure
    curves: dict[str, list[Curve]]  # metric -> the curves drawn
    files: list[Path]
    messages: list[str]


def plot_multirun(folder: str | Path, metric: str = "test_return_mean", out: str | Path | None = None,
                  entropy: bool = True, health: bool = True) -> PlotResult:
    """Write ``<metric>.png/.pdf`` (and ``policy_entropy.png/.pdf``, and with ``health``
    one figure per critic-health metric of :data:`HEALTH_METRICS` the runs logged) for the
    multirun ``folder`` into ``out`` (default ``<folder>/plots``); returns figures, curves
    and notes."""
    runs = load_runs(folder)
    messages: list[str] = []
    metrics = [metric]
    if entropy and metric != ENTROPY_METRIC:
        if any(ENTROPY_METRIC in r.metrics for r in finished(runs)):
            metrics.append(ENTROPY_METRIC)
        else:
            messages.append(f"note: no run logged {ENTROPY_METRIC}; no entropy figure")
    if health:
        metrics += [m for m in HEALTH_METRICS
                    if m != metric and all(m in r.metrics for r in finished(runs))]
    curves = {m: aggregate(runs, m, messages if m == metric else []) for m in metrics}
    excluded = excluded_runs(runs)
    messages += [f"excluded: {line}" for line in excluded]
    note = "" if not excluded else (f"Excluded {len(excluded)} of {len(runs)} runs:\n" + "\n".join(excluded))
    out_dir = Path(out) if out is not None else Path(folder) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(curves[metric])
    figures, files = {}, []
    for m, cs in curves.items():
        figures[m] = plot_curves(cs, m, colors, runs=runs, note=note)
        for ext in FORMATS:
            path = out_dir / f"{m}.{ext}"
            figures[m].savefig(path, dpi=150)
            files.append(path)
    return PlotResult(figures=figures, curves=curves, files=files, messages=messages)


# -- CLI -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lica.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a multirun folder (outputs/multiruns/<date>/<time>_<name>) or one run")
    parser.add_argument("--metric", default="test_return_mean", help="y-axis metric (default: test_return_mean)")
    parser.add_argument("--out", default=None, help="output folder (default: <folder>/plots)")
    parser.add_argument("--no-entropy", action="store_true", help="skip the policy-entropy figure")
    parser.add_argument("--no-health", action="store_true", help="skip the critic-health figures")
    args = parser.parse_args(argv)
    try:
        result = plot_multirun(args.folder, args.metric, args.out, entropy=not args.no_entropy,
                               health=not args.no_health)
    except RunsError as err:
        print(f"lica.plot: error: {err}", file=sys.stderr)
        return 2
    for msg in result.messages:
        print(msg)
    for m, curves in result.curves.items():
        print(f"{m}:")
        for c in curves:
            print(f"  {c.env:<18} {c.label:<28} seeds={c.n_seeds}  final median {c.median[-1]:.3f} "
                  f"[{c.q1[-1]:.3f}, {c.q3[-1]:.3f}] at {c.steps[-1]:.0f} env steps")
    for path in result.files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
