"""``hydra/sweeper=lica`` (the default of ``lica/conf/train.yaml``): Hydra's basic sweeper with
a plan, failures that do not stop the sweep, and a non-zero exit when any job failed.

* Expansion is the basic sweeper's (``hydra.sweeper.params`` of an experiment, then the
  command line; cartesian product; ``max_batch_size``).
* Before launching, every job's config is composed (which also checks it, as the basic
  sweeper does) and the plan -- each job's overrides, variant and folder -- is written to
  ``<sweep dir>/jobs.json`` (:mod:`lica.sweep`).  ``hydra.sweeper.plan_only=true`` prints
  the plan and the number of jobs and launches nothing (``-m --cfg job`` is refused by Hydra).
* Every batch runs to its end even when jobs fail; each job's outcome goes into
  ``jobs.json``.  When a job failed, the multirun-end callbacks (the variant table and
  the list of failed jobs, :mod:`lica.hydra_callbacks`) run here, and the sweep then
  stops with :class:`MultirunFailed`: Hydra prints its message and exits with status 1.
"""


import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class LicaSweeperConf:
    _target_: str = "hydra_plugins.lica_sweeper.lica_sweeper.LicaSweeper"
    max_batch_size: Optional[int] = None  # jobs per launch; None: all at once
    params: Optional[Dict[str, str]] = None  # sweep axes (experiments set them)
    plan_only: bool = False  # list the jobs and their variants, launch nothing


ConfigStore.instance().store(group="hydra/sweeper", name="lica", node=LicaSweeperConf, provider="lica")


class MultirunFailed(CompactHydraException):
    """Some jobs of the multirun failed (Hydra prints the message and exits with 1)."""


class LicaSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 plan_only: bool = False) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.plan_only = plan_only

    def sweep(self, arguments: List[str]) -> Any:
        from lica import sweep as lica_sweep

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        params_conf = self._parse_config() + list(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        jobs = [list(job) for batch in self.overrides for job in batch]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))  # resolved once (${now:...}): the jobs' parent
        configs, subdirs = zip(*(self._compose(job, num) for num, job in enumerate(jobs)))
        records = lica_sweep.plan(jobs, configs, [str(sweep_dir / d) for d in subdirs])
        if self.plan_only:
            launcher = str(self.config.hydra.launcher._target_).rsplit(".", 1)[-1]
            print(lica_sweep.format_plan(records, str(sweep_dir), launcher), flush=True)
            return []
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        lica_sweep.write_jobs(sweep_dir, records)
        returns, first = [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            results = self.launcher.launch(batch, initial_job_idx=first)
            lica_sweep.record_results(records, first, results)
            lica_sweep.write_jobs(sweep_dir, records)
            first += len(batch)
            returns.append(results)
        failed = [r for r in records if r.status == "FAILED"]
        if failed:
            self.hydra_context.callbacks.on_multirun_end(config=self.config,
                                                         config_name=self.config.hydra.job.config_name)
            raise MultirunFailed(
                f"lica multirun: {len(failed)} of {len(records)} jobs failed "
                f"(job {', '.join(str(r.num) for r in failed)}; errors and logs listed above, "
                f"outcomes in {sweep_dir / lica_sweep.JOBS_FILE})")
        return returns

    def _compose(self, overrides: List[str], num: int) -> Tuple[Any, str]:
        """A job's task config (without the hydra node) and its folder within the sweep dir."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = num
        task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        return task, str(cfg.hydra.sweep.subdir)
