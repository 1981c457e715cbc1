"""Every random stream of lica, named, and derived from one seed.

* The process: :func:`seed_everything` seeds Python's, numpy's and torch's global RNGs
  (Lightning's ``seed_everything``, env worker processes included): network
  initialisation and everything else that draws from them.
* Action sampling of the training rollouts: :func:`sampling_generator`, a
  ``torch.Generator`` of its own (checkpointed by the DataModule), so nothing else
  shifts the actions a seed gives.
* Episode resets: every episode's reset seed comes from
  ``SeedSequence([seed, stream, index])`` (:func:`episode_seeds`), one :class:`Stream` per
  use, so a resumed run sees exactly the episodes the uninterrupted run would have seen
  and the streams never share an episode.
* Checkpoints: :func:`rng_state` / :func:`set_rng_state` save and restore every global
  RNG (the module's checkpoint entry), so a resumed run draws what the uninterrupted
  one would have drawn.
"""

from __future__ import annotations

import random
from enum import IntEnum
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


class Stream(IntEnum):
    """The episode-seed streams (the second entry of the ``SeedSequence``)."""

    TRAIN = 0  # training batches (index: the batch number)
    TEST = 1  # evaluations during training (index: the evaluation number)
    EVALUATE = 2  # python -m lica.evaluate (no index: one set of episodes per seed)
    BENCH = 7  # the bench's own limit and rollout batches (index: the batch number)


def episode_seeds(seed: int, stream: Stream, n: int, index: int | None = None) -> np.ndarray:
    """The reset seeds of ``n`` episodes: ``SeedSequence([seed, stream, index])``, int64."""
    entropy = [seed, int(stream)] + ([] if index is None else [index])
    return np.random.SeedSequence(entropy).generate_state(n).astype(np.int64)


def sampling_generator(seed: int) -> torch.Generator:
    """The ``torch.Generator`` a collector samples training actions with."""
    return torch.Generator().manual_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed every global RNG of this process (and of the env workers it starts)."""
    pl.seed_everything(seed, workers=True)


def rng_state() -> dict[str, Any]:
    """Every global RNG's state, as plain tensors and numbers (loadable with
    ``weights_only=True``, which Lightning uses to resume)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos,
                                                      has_gauss, cached], "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
