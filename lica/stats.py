"""Statistics of one variant across its seeds (Agarwal et al., "Deep RL at the Edge of the
Statistical Precipice", NeurIPS 2021 -- the rliable recommendations).

:func:`summarize` gives, for the final values of a variant's seeds:

* the median with the interquartile range (25th and 75th percentiles, linear interpolation);
* the mean with a 95 % percentile-bootstrap confidence interval;
* the interquartile mean (IQM: the mean of the middle 50 %, ``scipy.stats.trim_mean(x,
  0.25)``, rliable's ``aggregate_iqm``) with its 95 % percentile-bootstrap interval.

rliable's interval for one task is its stratified bootstrap with a single stratum, i.e.
seeds resampled with replacement; here that resampling is ``scipy.stats.bootstrap``
(``method="percentile"``, seeded, so the numbers are reproducible).  rliable itself is not
used: its only release (1.2.0) needs ``arch < 8``, and arch 7 fails to import with pandas 3
(the version installed with lica's dependencies), see the README.  With fewer than two
seeds there is no interval (NaN).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
FIELDS = ("n", "median", "q1", "q3", "mean", "mean_ci_low", "mean_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high")


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean after cutting 25 % of the values at each end."""
    return stats.trim_mean(x, 0.25, axis=axis)


def bootstrap_ci(values: Sequence[float], statistic, seed: int = 0,
                 n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of ``statistic(x, axis=-1)`` over resampled seeds."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    if np.all(x == x[0]):  # every resample is the same
        return float(x[0]), float(x[0])
    res = stats.bootstrap((x,), statistic, vectorized=True, n_resamples=n_resamples, method="percentile",
                          confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(values: Sequence[float], seed: int = 0) -> dict[str, float]:
    """The fields of :data:`FIELDS` for the finite ``values`` (one per seed)."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return {"n": 0, **{f: float("nan") for f in FIELDS[1:]}}
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    mean_ci = bootstrap_ci(x, np.mean, seed)
    iqm_ci = bootstrap_ci(x, iqm, seed)
    return {"n": len(x), "median": float(median), "q1": float(q1), "q3": float(q3),
            "mean": float(np.mean(x)), "mean_ci_low": mean_ci[0], "mean_ci_high": mean_ci[1],
            "iqm": float(iqm(x)), "iqm_ci_low": iqm_ci[0], "iqm_ci_high": iqm_ci[1]}
