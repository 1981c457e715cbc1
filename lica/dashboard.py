"""A W&B report comparing the paper's ablations: C_Mix vs C_MLP and β vs ξ.

    python -m lica.dashboard --entity E --project P [--filters EXPR] [--dry-run]

:func:`dashboard_spec` is the report as plain data -- blocks of panel grids, each a run
set grouped by one comparison (``config.critic_label``: C_Mix / C_MLP;
``config.entropy_label``: ξ=<coef> adaptive, Eq. 6 / β=<coef> vanilla, Eq. 5; both split
per ``config.env_id``) and line plots of the test win rate, the test return and the
policy entropy against ``env_steps``, the median over the group's seeds with its min-max
band (W&B has no quartile band; ``python -m lica.plot`` draws the paper's).  The keys
are those :mod:`lica.loggers` writes into every W&B run's config.

``--dry-run`` prints the spec as JSON and needs nothing else.  Publishing builds the
report with the Reports API of the ``wandb-workspaces`` package (``pip install
'wandb[workspaces]'``; ``wandb.apis.reports`` is a shim over it) and saves it, which needs
the network and a W&B API key (``wandb login``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

X_AXIS = "env_steps"
PANELS = (
    ("Test win rate", "test_battle_won_mean"),  # SMAC / SMAX maps
    ("Test return", "test_return_mean"),
    ("Policy entropy", "policy_entropy"),
)
COMPARISONS = (
    ("critic", "C_Mix vs C_MLP (critic)",
     "Mixing-hypernetwork critic C_Mix against the MLP critic C_MLP (Fig. A2).", "config.critic_label"),
    ("entropy", "β vs ξ (entropy regularisation)",
     "Adaptive entropy ξ·H/sg(H) (Eq. 6) against vanilla entropy β·H (Eq. 5) (Fig. 2).",
     "config.entropy_label"),
)


class DashboardError(RuntimeError):
    """The report cannot be published from here (the message says what is missing)."""


def dashboard_spec(entity: str, project: str, filters: str = "") -> dict[str, Any]:
    """The report :func:`publish` would save, as plain data: ``report`` holds the
    ``Report`` arguments, ``blocks`` the headings, paragraphs and panel grids (each with
    ``runsets`` and ``panels`` holding ``Runset`` / ``LinePlot`` arguments)."""
    blocks: list[dict[str, Any]] = [
        {"type": "P", "text": "Seeds of one variant are grouped; lines are the median over seeds, "
                              "bands the min-max range. x-axis: environment steps."},
    ]
    for key, title, text, group_key in COMPARISONS:
        blocks.append({"type": "H2", "text": title})
        blocks.append({"type": "P", "text": text})
        blocks.append({
            "type": "PanelGrid", "comparison": key,
            "runsets": [{"entity": entity, "project": project, "name": title, "filters": filters,
                         "groupby": ["config.env_id", group_key]}],
            "panels": [{"type": "LinePlot", "title": f"{panel_title} — {title}", "x": X_AXIS, "y": [metric],
                        "title_x": "env steps", "title_y": metric, "groupby_aggfunc": "median",
                        "groupby_rangefunc": "minmax", "smoothing_factor": 0.0}
                       for panel_title, metric in PANELS],
        })
    return {
        "api": "wandb_workspaces.reports.v2",
        "report": {"entity": entity, "project": project, "title": "LICA ablations: C_Mix vs C_MLP, β vs ξ",
                   "description": "Test win rate, test return and policy entropy vs env steps, "
                                  "grouped by critic and by entropy regularisation."},
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
                panels=[wr.LinePlot(**{k: v for k, v in p.items() if k != "type"}) for p in block["panels"]]))
        else:
            raise ValueError(f"unknown block type {kind!r}")
    return wr.Report(**spec["report"], blocks=blocks)


def publish(spec: dict[str, Any]) -> str:
    """Save the report to W&B (network) and return its URL."""
    from lica.loggers import wandb_credentials_configured

    if not wandb_credentials_configured():
        raise DashboardError("publishing needs a W&B API key: run `wandb login` or set WANDB_API_KEY "
                             "(--dry-run prints the report without one)")
    report = build_report(spec)
    report.save()
    return str(report.url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lica.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entity", required=True, help="W&B entity (user or team)")
    parser.add_argument("--project", required=True, help="W&B project the runs were logged to")
    parser.add_argument("--filters", default="",
                        help="run-set filter expression, e.g. \"Config('env_id') == 'mpe:spread'\"")
    parser.add_argument("--dry-run", action="store_true", help="print the report spec as JSON; no network")
    args = parser.parse_args(argv)
    spec = dashboard_spec(args.entity, args.project, args.filters)
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
