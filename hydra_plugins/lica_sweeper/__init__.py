"""lica's Hydra plugins (Hydra loads plugins only from the ``hydra_plugins`` namespace):
the sweeper that plans, records and reports a multirun (``lica_sweeper.py``) and the
submitit launchers whose failed jobs fail in SLURM too (``submitit_launchers.py``)."""
