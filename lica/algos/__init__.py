"""Learning algorithms: LightningModules over the shared rollout machinery, one per entry
of the registry :data:`lica.config.ALGORITHMS`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lica.config import ALGORITHMS, ActorCriticConfig
from lica.envs.base import EnvInfo

if TYPE_CHECKING:
    from lica.algos.base import ActorCriticModule


def build_module(algo: ActorCriticConfig, env_info: EnvInfo) -> ActorCriticModule:
    """The LightningModule of the algorithm ``algo`` configures (``algo.name`` in
    :data:`lica.config.ALGORITHMS`)."""
    module, _, cls = ALGORITHMS[algo.name].module.partition(":")
    return getattr(importlib.import_module(module), cls)(algo, env_info)
