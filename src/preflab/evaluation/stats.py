"""Small statistics shared by every evaluation: estimates with a standard error and a bootstrap CI.

The confidence intervals are percentile bootstrap intervals (Efron & Tibshirani 1993, ch. 13): resample
the evaluation units (prompts, or clusters of samples that share a prompt) with replacement, recompute
the statistic, take the ``(1-c)/2`` and ``(1+c)/2`` quantiles. Every bootstrap is seeded. Next to it we
report the normal-approximation standard error, so that both can be compared at a glance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError

# Number of resampled index rows drawn at once (bounds memory at ~8 * chunk * n bytes).
_CHUNK_ROWS = 256


@dataclass
class Estimate:
    """A point estimate with its normal-approximation standard error and a bootstrap CI."""

    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.se:.4f} [{self.ci_low:.4f}, {self.ci_high:.4f}] (n={self.n})"


def as_float_array(
    values: Sequence[float] | np.ndarray, name: str, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """A 1-D float64 array; a NaN/inf or an out-of-range value is a :class:`DataError` naming its row."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = ~np.isfinite(arr)
    if lo is not None:
        bad |= arr < lo
    if hi is not None:
        bad |= arr > hi
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        rng = f" in [{lo}, {hi}]" if lo is not None or hi is not None else ""
        raise DataError(f"{name} must be finite{rng}, got {arr[row]!r}", row=row, field=name)
    return arr


def _cluster_index(clusters: Sequence | None, n: int) -> tuple[np.ndarray, int]:
    """Map every row to its cluster number (``0..k-1``); without clusters every row is its own."""
    if clusters is None:
        return np.arange(n), n
    if len(clusters) != n:
        raise DataError(f"{len(clusters)} cluster ids for {n} values", field="clusters")
    _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return inverse, int(inverse.max()) + 1 if n else 0


def bootstrap_weights(n: int, n_bootstrap: int, seed: int, clusters: Sequence | None = None):
    """Yield ``(rows, n)`` arrays of resampling multiplicities, ``n_bootstrap`` rows in all.

    Row ``b`` gives how many times each of the ``n`` values enters bootstrap replicate ``b``; with
    ``clusters`` whole clusters are resampled (all samples of a prompt together).
    """
    index, k = _cluster_index(clusters, n)
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_bootstrap:
        rows = min(_CHUNK_ROWS, n_bootstrap - done)
        counts = rng.multinomial(k, np.full(k, 1.0 / k), size=rows)  # (rows, k) cluster multiplicities
        yield counts[:, index].astype(np.float64)
        done += rows


def weighted_mean_se(
    values: np.ndarray, weights: np.ndarray | None = None, clusters: Sequence | None = None
) -> tuple[float, float]:
    """Mean and its standard error; with clusters, the cluster-robust (sandwich) standard error."""
    n = len(values)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = float(np.sum(w * values) / np.sum(w))
    if n < 2:
        return mean, float("nan")
    index, k = _cluster_index(clusters, n)
    if k < 2:
        return mean, float("nan")
    # Linearisation of the ratio estimator: residual totals per cluster.
    resid = np.bincount(index, weights=w * (values - mean), minlength=k)
    var = k / (k - 1) * np.sum(resid**2) / np.sum(w) ** 2
    return mean, float(np.sqrt(var))


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
    *,
    clusters: Sequence | None = None,
    n_bootstrap: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """(Weighted) mean with a percentile-bootstrap CI over rows (or clusters) and a normal SE."""
    vals = np.asarray(values, dtype=np.float64)
    n = len(vals)
    if n == 0:
        raise DataError("cannot estimate a mean from zero values")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    mean, se = weighted_mean_se(vals, w, clusters)
    if n_bootstrap <= 0 or n < 2:
        return Estimate(mean, se, float("nan"), float("nan"), n, confidence)
    reps = []
    for counts in bootstrap_weights(n, n_bootstrap, seed, clusters):
        cw = counts * w
        tot = cw.sum(axis=1)
        reps.append((cw @ vals) / np.where(tot > 0, tot, 1.0))
    lo, hi = percentile_ci(np.concatenate(reps), confidence)
    return Estimate(mean, se, lo, hi, n, confidence)


def bootstrap_statistic(
    stat: Callable[[np.ndarray], float],
    n: int,
    *,
    clusters: Sequence | None = None,
    n_bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Bootstrap any statistic of the data given as a function of row multiplicities.

    ``stat(counts)`` receives a length-``n`` vector of how often each row is drawn and returns the
    statistic on that resample (so weighted fits need no copying). Returns ``(se, ci_low, ci_high)``,
    the standard error being the standard deviation of the replicates.
    """
    if n_bootstrap <= 0 or n < 2:
        return float("nan"), float("nan"), float("nan")
    reps = np.array([stat(row) for counts in bootstrap_weights(n, n_bootstrap, seed, clusters) for row in counts])
    reps = reps[np.isfinite(reps)]
    if reps.size < 2:
        return float("nan"), float("nan"), float("nan")
    lo, hi = percentile_ci(reps, confidence)
    return float(reps.std(ddof=1)), lo, hi


def percentile_ci(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
