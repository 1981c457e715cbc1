"""The episode batch (docs/algorithm.md §6, PyMARL's layout) and its episode statistics.

B episodes, padded to the longest one.  Per-state fields have T+1 rows (the state after
the last transition is kept, with the action chosen there, which feeds the target
critic at the last index); per-transition fields have T rows.  ``filled`` marks real
rows; padding has zeros everywhere, including ``avail`` (no available action).  A batch
from the collector carries its episodes' returns, lengths and wins (:class:`EpisodeStats`),
so the learner logs them without asking the DataModule.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np
import torch
from torch import Tensor


@dataclass
class EpisodeStats:
    returns: np.ndarray  # (B,) undiscounted episode return
    lengths: np.ndarray  # (B,) transitions per episode
    won: np.ndarray  # (B,) bool

    def summary(self, prefix: str, reports_wins: bool) -> dict[str, float]:
        out = {f"{prefix}_return_mean": float(self.returns.mean()),
               f"{prefix}_ep_length_mean": float(self.lengths.mean())}
        if reports_wins:
            out[f"{prefix}_battle_won_mean"] = float(self.won.mean())
        return out


@dataclass
class EpisodeBatch:
    obs: Tensor  # (B, T+1, n, O) float
    state: Tensor  # (B, T+1, S) float
    avail: Tensor  # (B, T+1, n, A) bool
    actions: Tensor  # (B, T+1, n) long
    actions_onehot: Tensor  # (B, T+1, n, A) float
    filled: Tensor  # (B, T+1) bool
    reward: Tensor  # (B, T) float
    terminated: Tensor  # (B, T) bool -- a true end of the episode
    truncated: Tensor  # (B, T) bool -- cut by the time limit
    env_steps: int = 0  # cumulative training env steps once this batch was collected
    stats: Optional[EpisodeStats] = field(default=None, compare=False)  # its episodes' returns, lengths, wins

    @property
    def batch_size(self) -> int:
        return self.obs.shape[0]

    @property
    def max_t(self) -> int:
        """T: the number of transitions of the longest episode."""
        return self.reward.shape[1]

    def to(self, device: torch.device | str) -> EpisodeBatch:
        """The tensors on ``device`` (the rest as it is)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, Tensor):
                moved[k] = v.to(device, non_blocking=True)
        return EpisodeBatch(**moved)

    @staticmethod
    def cat(batches: list[EpisodeBatch]) -> EpisodeBatch:
        """The episodes of several batches in one batch, zero-padded to the longest; its
        ``env_steps`` is the first batch's (no statistics)."""
        t_max = max(b.max_t for b in batches)
        out = {}
        for f in fields(EpisodeBatch):
            if f.name in ("env_steps", "stats"):
                continue
            parts = []
            for b in batches:
                x = getattr(b, f.name)
                rows = t_max + (x.shape[1] - b.max_t)  # T+1 for per-state fields, T per transition
                pad = torch.zeros(x.shape[0], rows - x.shape[1], *x.shape[2:], dtype=x.dtype, device=x.device)
                parts.append(torch.cat([x, pad], dim=1))
            out[f.name] = torch.cat(parts, dim=0)
        return EpisodeBatch(**out, env_steps=batches[0].env_steps)

    def state_dict(self) -> dict[str, Tensor | int]:
        """The tensors and ``env_steps`` (what a checkpoint keeps of a batch)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "stats"}

    def terminal(self, bootstrap_on_timeout: bool) -> Tensor:
        """Transitions after which the target does not bootstrap.  The reference code
        stores a time-out as terminal (``bootstrap_on_timeout=False``)."""
        return self.terminated if bootstrap_on_timeout else self.terminated | self.truncated

    def step_mask(self) -> Tensor:
        """Valid-transition mask ``(B, T)``: ``filled[:, :-1]`` with every row after a
        terminal step removed (docs/algorithm.md §6)."""
        mask = self.filled[:, :-1].clone()
        ended = self.terminated | self.truncated
        mask[:, 1:] &= ~ended[:, :-1].cumsum(1).bool()
        return mask
