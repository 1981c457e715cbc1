"""Learning algorithms: LightningModules over the shared rollout machinery."""

from __future__ import annotations

from lica.algos.base import ActorCriticModule
from lica.config import AlgoConfig
from lica.envs.base import EnvInfo


def build_module(algo: AlgoConfig, env_info: EnvInfo, eval_interval: int) -> ActorCriticModule:
    """The LightningModule named by ``algo.name``."""
    if algo.name == "lica":
        from lica.algos.lica import LICA

        return LICA(algo, env_info, eval_interval)
    if algo.name == "coma":
        from lica.algos.coma import COMA

        return COMA(algo, env_info, eval_interval)
    raise ValueError(f"Unknown algo {algo.name!r}: choose algo=lica or algo=coma.")
