"""Best-of-n against a proxy reward model, scored by gold: the over-optimisation curve without training.

Best-of-n sampling (Nakano et al. 2021, WebGPT; Stiennon et al. 2020) draws n completions from the policy and keeps
the one the proxy reward model scores highest. Its KL to the policy has the closed form
KL(π_BoN ‖ π) = log n − (n − 1)/n (Stiennon et al. 2020, appendix; used by Gao, Schulman & Hilton 2022, "Scaling
Laws for Reward Model Overoptimization", for their BoN curves), so a sweep n = 1, 2, 4 … 64 moves the policy away
from π at known KL while the proxy keeps rising and gold, past some n, falls.

Estimator (Gao et al. 2022, §2; Nakano et al. 2021): from N ≥ n samples of a prompt, the expected gold (and proxy)
reward of best-of-n over all C(N, n) subsets, unbiased and far less noisy than drawing subsets: with the samples
sorted by proxy score ascending (rank i = 1 … N), sample i is the subset's best with probability
C(i − 1, n − 1) / C(N, n). Tied proxy scores share their ranks' weight equally. The curve is the mean over prompts
(with its standard error across prompts).

An ensemble penalty (Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization": uncertainty-
weighted optimisation) selects by mean − λ·std of the members' rewards; the proxy reported is still the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .overoptimization import OverOptimisation, overoptimisation

__all__ = ["BestOfNPoint", "best_of_n_curve", "best_of_n_kl", "best_of_n_weights", "bon_sizes"]


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ π) = log n − (n − 1)/n (0 at n = 1)."""
    if n < 1:
        raise ValueError(f"n must be ≥ 1, got {n}")
    return math.log(n) - (n - 1) / n


def bon_sizes(n_max: int) -> list[int]:
    """1, 2, 4, … up to ``n_max`` (``n_max`` itself included)."""
    sizes, n = [], 1
    while n < n_max:
        sizes.append(n)
        n *= 2
    return [*sizes, n_max]


def best_of_n_weights(selection: Sequence[float], n: int) -> np.ndarray:
    """P(sample j is the best of a uniformly random n-subset) under ``selection`` scores, for every j (sums to 1);
    tied scores split their ranks' weights equally."""
    s = np.asarray(selection, dtype=np.float64)
    big_n = s.size
    if not 1 <= n <= big_n:
        raise DataError(f"best-of-{n} needs at least {n} samples per prompt, got {big_n}", field="n")
    order = np.argsort(s, kind="stable")
    total = math.comb(big_n, n)
    rank_w = np.array([math.comb(i, n - 1) / total for i in range(big_n)])  # rank i (0-based) ascending
    w = np.empty(big_n)
    w[order] = rank_w
    sorted_s = s[order]
    start = 0
    while start < big_n:  # ties: the tied samples share the total weight of their ranks
        stop = start
        while stop + 1 < big_n and sorted_s[stop + 1] == sorted_s[start]:
            stop += 1
        if stop > start:
            idx = order[start : stop + 1]
            w[idx] = w[idx].mean()
        start = stop + 1
    return w


def _se(values: list[float]) -> float:
    """Standard error of the mean across prompts (0 for one prompt)."""
    return float(np.std(values, ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


@dataclass
class BestOfNPoint:
    n: int
    kl: float
    proxy: float
    gold: float
    proxy_se: float
    gold_se: float


def best_of_n_curve(
    proxy: Sequence[Sequence[float]],
    gold: Sequence[Sequence[float]],
    *,
    sizes: Sequence[int] | None = None,
    selection: Sequence[Sequence[float]] | None = None,
) -> tuple[list[BestOfNPoint], OverOptimisation]:
    """Expected proxy and gold reward of best-of-n per n (mean and SE over prompts), and the over-optimisation
    table (Gao et al.'s BoN form, gold = c + d(α − β d), d = √KL). ``proxy`` / ``gold``: per prompt, one score per
    sample; ``selection``: the scores best-of-n maximises (default ``proxy``; e.g. mean − λ·std)."""
    if len(proxy) != len(gold) or not proxy:
        raise DataError(f"{len(proxy)} prompts with proxy scores, {len(gold)} with gold", field="gold")
    selection = proxy if selection is None else selection
    for i, (p, g, s) in enumerate(zip(proxy, gold, selection, strict=True)):
        if not (len(p) == len(g) == len(s)):
            raise DataError(f"{len(p)} proxy, {len(g)} gold and {len(s)} selection scores", row=i, field="gold")
    n_min = min(len(p) for p in proxy)
    sizes = list(sizes) if sizes is not None else bon_sizes(n_min)
    points = []
    for n in sizes:
        per_p, per_g = [], []
        for p, g, s in zip(proxy, gold, selection, strict=True):
            w = best_of_n_weights(s, n)
            per_p.append(float(w @ np.asarray(p, dtype=np.float64)))
            per_g.append(float(w @ np.asarray(g, dtype=np.float64)))
        points.append(
            BestOfNPoint(n, best_of_n_kl(n), float(np.mean(per_p)), float(np.mean(per_g)), _se(per_p), _se(per_g))
        )
    rows = [
        {"step": pt.n, "kl": pt.kl, "proxy": pt.proxy, "gold": pt.gold, "proxy_se": pt.proxy_se, "gold_se": pt.gold_se}
        for pt in points
    ]
    return points, overoptimisation(rows, form="bon")
