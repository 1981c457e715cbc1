"""A W&B report comparing the variants of one or more multiruns, as the disk figures do.

    python -m lica.dashboard --entity E --project P --runs <multirun folder> [...] [--filters EXPR] [--dry-run]

:func:`dashboard_spec` is the report as plain data.  It is built from the runs on disk
(:func:`lica.runs.load_runs`), so it shows exactly the groups of the end-of-sweep table
and of ``python -m lica.plot``: one section per environment (env label with the agent
count), whose run set holds that env's runs of those variants (``config.variant_id``) and
groups them by ``config.variant`` -- the W&B group each run was given
(:mod:`lica.loggers`: ``<label> [<variant id>]``, the label being what differs across the
sweep, COMA labelled COMA).  Panels, per env, for the metrics its runs logged: test
return, test win rate (only for envs that report wins) and policy entropy, against
``env_steps`` under their W&B names (``test/return_mean``, ``test/battle_won_mean``,
``train/policy_entropy``).

W&B's line plots have no quartile band, so each panel is a custom chart
(:data:`QUARTILE_BAND_SPEC`, Vega-Lite): per variant and evaluation, the median over seeds
with a marker and, where at least 3 seeds are there, the 25th-75th percentile band -- the
statistics of the disk figures.  Seeds are aligned by binning ``env_steps`` to the env's
evaluation interval (each seed is evaluated once per interval), where the disk figures
interpolate.  Publishing first saves the chart preset in the entity
(``wandb.Api().create_custom_chart``), then the report with the Reports API of the
``wandb-workspaces`` package (``pip install 'wandb[workspaces]'``); both need the network
and an API key (``wandb login``).  ``--dry-run`` prints the spec as JSON and needs neither.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from lica.loggers import wandb_key
from lica.plot import MIN_SEEDS_FOR_BAND, metric_label
from lica.runs import RunRecord, RunsError, by_variant, finished, load_runs

X_AXIS = "env_steps"
PANELS = (  # (title, CSV metric), drawn where the env's runs logged the metric
    ("Test return", "test_return_mean"),
    ("Test win rate", "test_battle_won_mean"),  # envs that report wins (SMAC / SMAX)
    ("Policy entropy", "policy_entropy"),
)
CHART_NAME = "lica-median-quartile-band"
QUARTILE_BAND_SPEC: dict[str, Any] = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "description": "Median over seeds per variant (markers: evaluations) and the 25th-75th percentile "
                   f"band where >= {MIN_SEEDS_FOR_BAND} seeds are there (lica.dashboard)",
    "data": {"name": "wandb"},
    "title": "${string:title}",
    "transform": [
        {"filter": "isValid(datum['${field:y}']) && isValid(datum['${field:x}'])"},
        {"calculate": "floor(datum['${field:x}'] / ${string:eval_interval}) * ${string:eval_interval}",
         "as": "step"},
        {"aggregate": [{"op": "median", "field": "${field:y}", "as": "median"},
                       {"op": "q1", "field": "${field:y}", "as": "q1"},
                       {"op": "q3", "field": "${field:y}", "as": "q3"},
                       {"op": "distinct", "field": "${field:run}", "as": "seeds"}],
         "groupby": ["${field:group}", "step"]},
    ],
    "encoding": {
        "x": {"field": "step", "type": "quantitative", "title": "${string:x_title}"},
        "color": {"field": "${field:group}", "type": "nominal", "title": "variant"},
    },
    "layer": [
        {"transform": [{"filter": f"datum.seeds >= {MIN_SEEDS_FOR_BAND}"}],
         "mark": {"type": "area", "opacity": 0.22},
         "encoding": {"y": {"field": "q1", "type": "quantitative", "title": "${string:y_title}"},
                      "y2": {"field": "q3"}}},
        {"mark": {"type": "line", "point": True},
         "encoding": {"y": {"field": "median", "type": "quantitative", "title": "${string:y_title}"}}},
    ],
}


class DashboardError(RuntimeError):
    """The report cannot be published from here (the message says what is missing)."""


def dashboard_spec(entity: str, project: str, runs: Sequence[RunRecord], filters: str = "") -> dict[str, Any]:
    """The report :func:`publish` would save, as plain data: ``chart`` the custom-chart
    preset, ``report`` the ``Report`` arguments, ``blocks`` the headings, paragraphs and
    panel grids (each with ``runsets`` and ``panels``)."""
    chart_id = f"{entity}/{CHART_NAME}"
    blocks: list[dict[str, Any]] = [{
        "type": "P", "text": "One line per variant (the W&B group; the label says what differs across the "
                             "sweep): the median over its seeds at each evaluation, and the 25th-75th percentile "
                             f"band where it has at least {MIN_SEEDS_FOR_BAND} seeds. x-axis: environment steps."}]
    done = finished(runs)
    envs = dict.fromkeys(r.variant.env for r in done)
    for env in envs:
        members = [r for r in done if r.variant.env == env]
        variants = by_variant(members)
        logged = set.union(*(r.metrics for r in members))
        interval = max(int((r.config or {}).get("rollout", {}).get("eval_interval", 1)) for r in members)
        env_filter = f"Config('env_id') == '{env}' and Config('variant_id') in {sorted(variants)}"
        blocks.append({"type": "H2", "text": env})
        blocks.append({"type": "P", "text": "Variants: " + "; ".join(
            f"{ms[0].variant.label} ({len(ms)} seeds)" for ms in variants.values())})
        blocks.append({
            "type": "PanelGrid", "env": env,
            "runsets": [{"entity": entity, "project": project, "name": env,
                         "filters": f"{env_filter} and ({filters})" if filters else env_filter,
                         "groupby": ["config.variant"]}],
            "panels": [{"type": "CustomChart", "chart_name": chart_id, "metric": metric,
                        "query": {"config": {"keys": ["variant"]}, "history": {"keys": [X_AXIS, wandb_key(metric)]}},
                        "chart_fields": {"x": X_AXIS, "y": wandb_key(metric), "group": "variant", "run": "name"},
                        "chart_strings": {"title": f"{title} -- {env}", "x_title": "environment steps",
                                          "y_title": metric_label(metric), "eval_interval": str(interval)}}
                       for title, metric in PANELS if metric in logged],
        })
    return {
        "api": "wandb_workspaces.reports.v2",
        "chart": {"entity": entity, "name": CHART_NAME, "display_name": "lica: median and quartile band over seeds",
                  "spec_type": "vega2", "access": "private", "spec": QUARTILE_BAND_SPEC},
        "report": {"entity": entity, "project": project, "title": "LICA variants: " + ", ".join(envs),
                   "description": "Test return, win rate (where the env reports wins) and policy entropy vs "
                                  "environment steps; median and quartile band over seeds, per variant."},
        "blocks": blocks,
    }


def build_report(spec: dict[str, Any], wr: Any = None) -> Any:
    """The ``wandb_workspaces.reports.v2.Report`` for ``spec`` (``wr``: that module)."""
    if wr is None:
        try:
            import wandb_workspaces.reports.v2 as wr
        except ImportError as err:
            raise DashboardError(
                "publishing needs the wandb-workspaces package (pip install 'wandb[workspaces]'); "
                "--dry-run prints the report without it") from err
    blocks = []
    for block in spec["blocks"]:
        kind = block["type"]
        if kind in ("H1", "H2", "P"):
            blocks.append(getattr(wr, kind)(text=block["text"]))
        elif kind == "PanelGrid":
            blocks.append(wr.PanelGrid(
                runsets=[wr.Runset(**rs) for rs in block["runsets"]],
                panels=[wr.CustomChart(**{k: v for k, v in p.items() if k not in ("type", "metric")})
                        for p in block["panels"]]))
        else:
            raise ValueError(f"unknown block type {kind!r}")
    return wr.Report(**spec["report"], blocks=blocks)


def publish(spec: dict[str, Any]) -> str:
    """Save the chart preset and the report to W&B (network); returns the report's URL."""
    from lica.loggers import wandb_credentials_configured

    if not wandb_credentials_configured():
        raise DashboardError("publishing needs a W&B API key: run `wandb login` or set WANDB_API_KEY "
                             "(--dry-run prints the report without one)")
    report = build_report(spec)
    import wandb

    wandb.Api().create_custom_chart(**spec["chart"])
    report.save()
    return str(report.url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lica.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project the runs were logged to")
    parser.add_argument("--runs", nargs="+", required=True,
                        help="multirun folder(s) whose variants the report compares (outputs/multiruns/...)")
    parser.add_argument("--filters", default="",
                        help="extra run-set filter expression, e.g. \"Config('experiment') == 'fig6_ablations'\"")
    parser.add_argument("--dry-run", action="store_true", help="print the report spec as JSON; no network")
    args = parser.parse_args(argv)
    try:
        runs = [r for folder in args.runs for r in load_runs(folder)]
        spec = dashboard_spec(args.entity, args.project, runs, args.filters)
    except RunsError as err:
        print(f"lica.dashboard: error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(spec, indent=2, ensure_ascii=False))
        return 0
    try:
        print(f"report saved: {publish(spec)}")
    except DashboardError as err:
        print(f"lica.dashboard: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
