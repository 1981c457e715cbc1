"""Hydra callbacks (``hydra.callbacks`` in ``conf/train.yaml``).

:class:`VariantTable` -- at the end of a multirun, a table of its variants (one row per
variant: critic, entropy term and coefficient, actor input, env, seeds, median final
``test_return_mean``), printed and written to ``<sweep dir>/variants.txt``; and at the
end of every job, the job's W&B run is finished if it is still open, so the next job of
the sweep starts its own run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class VariantTable(Callback):
    def __init__(self, metric: str = "test_return_mean", filename: str = "variants.txt") -> None:
        self.metric = metric
        self.filename = filename

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        try:
            import wandb
        except ImportError:
            return
        if wandb.run is not None:
            failed = getattr(getattr(job_return, "status", None), "name", "") == "FAILED"
            wandb.run.finish(exit_code=1 if failed else 0)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(_sweep_dir(config))
        print(self.report(folder))

    def report(self, folder: Path) -> str:
        """The table for ``folder`` (also written to ``folder/<filename>``); never raises
        on a sweep that produced nothing plottable: it says what is wrong instead."""
        from lica.plot import PlotError, format_variant_table, load_runs, variant_rows

        try:
            runs = load_runs(folder)
            table = format_variant_table(variant_rows(runs, self.metric))
        except PlotError as err:
            return f"\n== lica multirun {folder}: no variant table ({err})"
        text = (f"\n== lica multirun {folder}: {len(runs)} runs\n{table}\n"
                f"   figures: python -m lica.plot {folder}")
        try:
            (folder / self.filename).write_text(text.lstrip("\n") + "\n")
        except OSError:
            pass
        return text


def _sweep_dir(config: DictConfig) -> str:
    try:
        return str(config.hydra.sweep.dir)
    except Exception:  # config without the hydra node
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().sweep.dir)
