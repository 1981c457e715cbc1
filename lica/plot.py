"""Paper-style comparison figures from a multirun folder, without W&B.

    python -m lica.plot outputs/multiruns/<date>/<time>_<name> \
        [--metric test_return_mean] [--group-by critic,entropy] [--out DIR] [--no-entropy]

Reads every job's ``csv/metrics.csv`` and its variant fields (``summary.json`` "tags",
else ``csv/hparams.yaml`` "tags", else ``.hydra/config.yaml``), groups the runs into
variants (``--group-by``; seeds fold together), aligns the seeds of a variant on a common
env-step grid (the union of their logged env steps over the span every seed covers,
linear interpolation) and draws, as in the paper:

* ``<metric>.png`` -- median with the 1st-3rd quartile band vs env steps (Fig. 4), one
  panel per environment;
* ``policy_entropy.png`` -- the entropy trajectories of the same variants (Fig. 2b-c).

:func:`plot_multirun` returns the figures and the curves they were drawn from
(:class:`Curve`), so the numbers can be checked; :func:`variant_rows` /
:func:`format_variant_table` give the per-variant table the Hydra callback prints.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

VARIANT_FIELDS = ("algo", "critic", "entropy", "entropy_coef", "actor_input", "env")
GROUP_FIELDS = ("algo", "critic", "entropy", "actor_input", "env")  # entropy includes its coefficient
ENTROPY_METRIC = "policy_entropy"
METRIC_LABELS = {
    "test_return_mean": "test return (median over seeds)",
    "test_battle_won_mean": "test win rate (median over seeds)",
    "test_ep_length_mean": "test episode length",
    "policy_entropy": "policy entropy H(π)",
    "train_return_mean": "training return",
    "critic_loss": "critic loss",
}


class PlotError(ValueError):
    """A multirun folder that cannot be plotted as asked (the message says why)."""


# -- loading ---------------------------------------------------------------------------
@dataclass
class RunRecord:
    """One job of a multirun: its folder, variant fields and logged rows."""

    path: Path
    tags: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def seed(self) -> Any:
        return self.tags.get("seed")

    @property
    def metrics(self) -> set[str]:
        """Columns with at least one value in this run."""
        return {k for row in self.rows for k, v in row.items() if v not in ("", None)}

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(env steps, values) of ``metric``, sorted by env step; a step logged twice
        (a resumed run) keeps its last value."""
        points: dict[float, float] = {}
        for row in self.rows:
            value, step = row.get(metric), row.get("env_steps")
            if value not in ("", None) and step not in ("", None):
                points[float(step)] = float(value)
        steps = np.array(sorted(points), dtype=float)
        return steps, np.array([points[s] for s in steps], dtype=float)


def find_run_dirs(folder: str | Path) -> list[Path]:
    """Run folders under ``folder`` (or ``folder`` itself): those holding
    ``<logger name>/metrics.csv``, in job-number order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PlotError(f"{folder} is not a folder (expected a multirun folder such as "
                        "outputs/multiruns/<date>/<time>_<name>)")
    dirs = {p.parent.parent for p in folder.rglob("metrics.csv") if "wandb" not in p.parts}
    return sorted(dirs, key=_natural_key)


def load_runs(folder: str | Path) -> list[RunRecord]:
    """Every run under ``folder`` with its metrics and variant fields."""
    folder = Path(folder)
    run_dirs = find_run_dirs(folder)
    if not run_dirs:
        raise PlotError(f"no runs found under {folder}: expected one folder per job holding "
                        "csv/metrics.csv (a multirun folder such as outputs/multiruns/<date>/<time>_<name>, "
                        "with logger=csv or logger=[csv,wandb])")
    runs = []
    for run_dir in run_dirs:
        metrics_file = next(p for p in sorted(run_dir.glob("*/metrics.csv")))
        with metrics_file.open(newline="") as f:
            rows = list(csv.DictReader(f))
        runs.append(RunRecord(path=run_dir, tags=read_tags(run_dir), rows=rows))
    return runs


def read_tags(run_dir: Path) -> dict[str, Any]:
    """The run's variant fields (those of :func:`lica.loggers.run_tags`)."""
    summary = run_dir / "summary.json"
    if summary.exists():
        tags = json.loads(summary.read_text()).get("tags")
        if tags:
            return tags
    from omegaconf import OmegaConf

    for hparams in sorted(run_dir.glob("*/hparams.yaml")):
        tags = OmegaConf.to_container(OmegaConf.load(hparams)).get("tags")
        if tags:
            return tags
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.exists():
        c = OmegaConf.load(hydra_cfg)
        algo = c.algo
        return {"algo": algo.name, "critic": algo.critic, "entropy": algo.entropy,
                "entropy_coef": algo.entropy_coef if algo.entropy == "adaptive" else algo.beta,
                "actor_input": algo.actor_input, "env": f"{c.env.backend}:{c.env.scenario}",
                "seed": c.seed}
    raise PlotError(f"cannot tell which variant {run_dir} is: it has no summary.json, "
                    "csv/hparams.yaml with tags, or .hydra/config.yaml")


def check_metric(runs: Sequence[RunRecord], metric: str) -> None:
    """Fail, naming the runs, when some runs did not log ``metric``."""
    missing = [r for r in runs if metric not in r.metrics]
    if not missing:
        return
    common = sorted(set.intersection(*(r.metrics for r in runs)) - {"env_steps", "step"})
    if len(missing) == len(runs):
        raise PlotError(f"no run logged {metric!r}; metrics every run logged: {', '.join(common)}")
    raise PlotError(
        f"the runs logged different metrics: {metric!r} is missing in {len(missing)} of {len(runs)} runs "
        f"({', '.join(str(r.path) for r in missing)}); metrics every run logged: {', '.join(common)}")


# -- aggregation -----------------------------------------------------------------------
@dataclass
class Curve:
    """One variant's seeds on a common env-step grid: median and quartiles."""

    label: str
    env: str
    key: tuple
    steps: np.ndarray
    median: np.ndarray
    q1: np.ndarray
    q3: np.ndarray
    seeds: list[Any]
    runs: list[Path] = field(default_factory=list)

    @property
    def n_seeds(self) -> int:
        return len(self.runs)


def variant_label(tags: dict[str, Any], fields: Iterable[str]) -> str:
    """Paper names: C_Mix / C_MLP, ξ (adaptive entropy, Eq. 6) / β (vanilla, Eq. 5)."""
    parts = []
    for f in fields:
        v = tags.get(f)
        if f == "critic":
            parts.append({"mix": "C_Mix", "mlp": "C_MLP"}.get(v, str(v)))
        elif f == "entropy":
            sym = "ξ" if v == "adaptive" else "β" if v == "vanilla" else str(v)
            parts.append(f"{sym}={tags.get('entropy_coef'):g}" if tags.get("entropy_coef") is not None else sym)
        elif f == "actor_input":
            parts.append({"probs": "π input", "gumbel": "Gumbel input"}.get(v, str(v)))
        elif f == "algo":
            parts.append(str(v).upper())
        else:
            parts.append(f"{f}={v}" if f != "env" else str(v))
    return ", ".join(parts)


def group_runs(runs: Sequence[RunRecord], group_by: Sequence[str]) -> dict[tuple, list[RunRecord]]:
    """Runs per variant, keyed by the ``group_by`` fields and the env (``entropy``
    includes its coefficient)."""
    unknown = [g for g in group_by if g not in GROUP_FIELDS]
    if unknown:
        raise PlotError(f"unknown --group-by field(s) {', '.join(unknown)}; choose from {', '.join(GROUP_FIELDS)}")
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(_group_key(run.tags, group_by), []).append(run)
    return groups


def _group_key(tags: dict[str, Any], group_by: Sequence[str]) -> tuple:
    key: list[Any] = [("env", tags.get("env"))]
    for f in group_by:
        if f != "env":
            key.append((f, tags.get(f)))
        if f == "entropy":
            key.append(("entropy_coef", tags.get("entropy_coef")))
    return tuple(key)


def aggregate(runs: Sequence[RunRecord], metric: str, group_by: Sequence[str] = ("critic", "entropy"),
              messages: list[str] | None = None) -> list[Curve]:
    """One :class:`Curve` per variant: the seeds interpolated onto the union of their env
    steps within the span all of them cover, then median and 25th/75th percentiles."""
    check_metric(runs, metric)
    messages = messages if messages is not None else []
    curves = []
    for key, members in sorted(group_runs(runs, group_by).items(), key=lambda kv: str(kv[0])):
        tags = members[0].tags
        label = variant_label(tags, [f for f in group_by if f != "env"]) or "all runs"
        mixed = [f for f in VARIANT_FIELDS if f not in dict(key) and len({str(m.tags.get(f)) for m in members}) > 1]
        if mixed:
            messages.append(f"note: {label} mixes runs that differ in {', '.join(mixed)}; add them to --group-by")
        series = [m.series(metric) for m in members]
        start, end = max(s[0][0] for s in series), min(s[0][-1] for s in series)
        grid = np.unique(np.concatenate([s[0][(s[0] >= start) & (s[0] <= end)] for s in series]))
        values = np.stack([np.interp(grid, steps, vals) for steps, vals in series])
        q1, median, q3 = np.percentile(values, [25, 50, 75], axis=0)
        if len(members) == 1:
            messages.append(f"note: {label} ({tags.get('env')}) has a single seed ({members[0].path}): "
                            "median line only, no quartile band")
        curves.append(Curve(label=label, env=str(tags.get("env")), key=key, steps=grid, median=median,
                            q1=q1, q3=q3, seeds=[m.seed for m in members], runs=[m.path for m in members]))
    return curves


# -- figures ---------------------------------------------------------------------------
def plot_curves(curves: Sequence[Curve], metric: str, colors: dict[str, str] | None = None) -> Any:
    """A matplotlib Figure: one panel per env, a median line per variant, its
    quartile band when it has more than one seed."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    envs = sorted({c.env for c in curves})
    colors = colors or _colors(curves)
    fig = Figure(figsize=(5.2 * len(envs), 3.9), layout="constrained")
    axes = fig.subplots(1, len(envs), squeeze=False)[0]
    for ax, env in zip(axes, envs):
        for c in (c for c in curves if c.env == env):
            color = colors[c.label]
            ax.plot(c.steps, c.median, color=color, linewidth=1.8, label=f"{c.label} (n={c.n_seeds})")
            if c.n_seeds > 1:
                ax.fill_between(c.steps, c.q1, c.q3, color=color, alpha=0.22, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", frameon=False)
    fig.suptitle(f"{metric}: median and 1st-3rd quartile over seeds", fontsize="medium")
    return fig


def _colors(curves: Sequence[Curve]) -> dict[str, str]:
    return {label: f"C{i}" for i, label in enumerate(dict.fromkeys(c.label for c in curves))}


@dataclass
class PlotResult:
    figures: dict[str, Any]  # metric -> matplotlib Figure
    curves: dict[str, list[Curve]]  # metric -> the curves drawn
    files: list[Path]
    messages: list[str]


def plot_multirun(folder: str | Path, metric: str = "test_return_mean",
                  group_by: Sequence[str] = ("critic", "entropy"), out: str | Path | None = None,
                  entropy: bool = True) -> PlotResult:
    """Write ``<metric>.png`` (and ``policy_entropy.png``) for the multirun ``folder``
    into ``out`` (default ``<folder>/plots``); returns figures, curves and notes."""
    runs = load_runs(folder)
    messages: list[str] = []
    metrics = [metric]
    if entropy and metric != ENTROPY_METRIC:
        if any(ENTROPY_METRIC in r.metrics for r in runs):
            metrics.append(ENTROPY_METRIC)
        else:
            messages.append(f"note: no run logged {ENTROPY_METRIC}; no entropy figure")
    curves = {m: aggregate(runs, m, group_by, messages if m == metric else []) for m in metrics}
    out_dir = Path(out) if out is not None else Path(folder) / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    colors = _colors(curves[metric])
    figures, files = {}, []
    for m, cs in curves.items():
        figures[m] = plot_curves(cs, m, colors)
        path = out_dir / f"{m}.png"
        figures[m].savefig(path, dpi=150)
        files.append(path)
    return PlotResult(figures=figures, curves=curves, files=files, messages=messages)


# -- the per-variant table (Hydra callback) --------------------------------------------
def variant_rows(runs: Sequence[RunRecord], metric: str = "test_return_mean") -> list[dict[str, Any]]:
    """One row per variant (all variant fields; seeds folded): its seeds and the median
    over seeds of each run's final ``metric`` (NaN for runs that never logged it)."""
    rows = []
    for key, members in sorted(group_runs(runs, GROUP_FIELDS).items(), key=lambda kv: str(kv[0])):
        tags = members[0].tags
        finals = [(vals[-1] if len(vals) else np.nan) for _, vals in (m.series(metric) for m in members)]
        finite = [v for v in finals if np.isfinite(v)]
        rows.append({
            "critic": variant_label(tags, ["critic"]), "entropy": variant_label(tags, ["entropy"]),
            "actor_input": tags.get("actor_input"), "env": tags.get("env"), "algo": tags.get("algo"),
            "seeds": len(members), f"final {metric} (median)": float(np.median(finite)) if finite else float("nan"),
        })
    return rows


def format_variant_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs)"
    cols = list(rows[0])
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join(line(r).rstrip() for r in [cols, ["-" * w for w in widths], *cells])


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


# -- CLI -------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lica.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a multirun folder (outputs/multiruns/<date>/<time>_<name>) or one run")
    parser.add_argument("--metric", default="test_return_mean", help="y-axis metric (default: test_return_mean)")
    parser.add_argument("--group-by", default="critic,entropy",
                        help=f"comma-separated variant fields, from {','.join(GROUP_FIELDS)} (default: critic,entropy)")
    parser.add_argument("--out", default=None, help="output folder (default: <folder>/plots)")
    parser.add_argument("--no-entropy", action="store_true", help="skip the policy-entropy figure")
    args = parser.parse_args(argv)
    group_by = [g.strip() for g in args.group_by.split(",") if g.strip()]
    try:
        result = plot_multirun(args.folder, args.metric, group_by, args.out, entropy=not args.no_entropy)
    except PlotError as err:
        print(f"lica.plot: error: {err}", file=sys.stderr)
        return 2
    for msg in result.messages:
        print(msg)
    for m, curves in result.curves.items():
        print(f"{m}:")
        for c in curves:
            print(f"  {c.env:<14} {c.label:<28} seeds={c.n_seeds}  final median {c.median[-1]:.3f} "
                  f"[{c.q1[-1]:.3f}, {c.q3[-1]:.3f}] at {c.steps[-1]:.0f} env steps")
    for path in result.files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
