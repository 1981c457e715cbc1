"""hydra-submitit-launcher's SLURM and local launchers (``lica/conf/launcher/*.yaml`` select
them through ``hydra.launcher._target_``), changed in two ways:

* inside the job, a task that raised is raised again after Hydra has recorded it, so
  submitit stores the traceback, the job's stderr log shows it and the job exits non-zero
  (``FAILED`` in ``sacct``) instead of reporting success;
* the submitting process waits for *every* job of the array, requeued ones included, and
  turns a failed, killed or cancelled job into a FAILED ``JobReturn`` naming its log
  (:func:`lica.sweep.collect_submitit`), instead of stopping at the first failure while
  other tasks still run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class _FailingSubmititLauncher(BaseSubmititLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        ret = super().__call__(*args, **kwargs)
        if ret.status == JobStatus.FAILED:
            raise ret._return_value  # submitit logs and stores it; the job exits with status 1
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """``BaseSubmititLauncher.launch`` up to the submission, then
        :func:`lica.sweep.collect_submitit` instead of stopping at the first failure."""
        import submitit

        from lica.sweep import collect_submitit

        assert self.config is not None and len(job_overrides) > 0
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k == "max_num_timeout"})
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
        sweep_dir.mkdir(parents=True, exist_ok=True)
        job_params: List[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        jobs = executor.map_array(self, *zip(*job_params))
        return collect_submitit(jobs, job_overrides, log)


class SlurmLauncher(_FailingSubmititLauncher):
    _EXECUTOR = "slurm"


class LocalLauncher(_FailingSubmititLauncher):
    _EXECUTOR = "local"
