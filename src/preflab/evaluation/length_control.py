"""Length-controlled win rate, as length-controlled AlpacaEval computes it.

Dubois et al. 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators"
(arXiv:2404.04475), fit a generalised linear model of the judge's preference on the *length difference*
and then ask the counterfactual question "what would the preference be if both answers had the same
length?". For one model A against a baseline B:

    logit P(a_i ≻ b_i) = θ + φ · tanh(Δ_i / sd(Δ)) + w · z_i,        Δ_i = len(a_i) − len(b_i)

where θ is A's quality advantage, φ the judge's length sensitivity, and ``z_i`` optional per-prompt
covariates (AlpacaEval's instruction-difficulty term; any column of prompt features). Δ is scaled by its
standard deviation but *not* centred, so a systematic length difference is attributed to φ, not to θ.
The length-controlled win rate sets the length term to zero:

    LC = mean_i σ(θ + w · z_i).

Preferences may be soft (in [0, 1]); the fit maximises the Bernoulli log-likelihood with soft targets
plus a small ridge penalty (which keeps θ finite when A wins every prompt). The CI is a percentile
bootstrap that refits the GLM on every resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError
from .stats import as_float_array, bootstrap_statistic, weighted_mean_se


@dataclass
class LengthControlledWinRate:
    """LC win rate with its bootstrap SE and CI, the fitted coefficients, and the raw win rate."""

    lc_win_rate: float
    se: float
    ci_low: float
    ci_high: float
    raw_win_rate: float
    intercept: float  # θ: quality advantage of A on the logit scale
    length_coef: float  # φ: the judge's sensitivity to tanh(Δ/sd(Δ))
    length_scale: float  # sd(Δ) used to scale the length difference
    mean_len_a: float
    mean_len_b: float
    n: int
    confidence: float = 0.95
    n_bootstrap: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LengthControlledWinRate:
        return cls(**data)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    l2: float = 1e-4,
    init: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> np.ndarray:
    """Ridge logistic regression with soft targets ``y ∈ [0, 1]`` by damped Newton steps.

    Minimises ``Σ w_i BCE(y_i, σ(x_i·β)) / Σ w_i + l2/2 · |β|²``; the objective is strictly convex so the
    solution is unique. ``x`` includes the intercept column.
    """
    n, d = x.shape
    w = np.ones(n) if weights is None else weights
    wsum = max(float(w.sum()), 1e-12)
    beta = np.zeros(d) if init is None else init.copy()

    def objective(b: np.ndarray) -> float:
        z = x @ b
        # BCE with logits, stable: log(1 + e^z) - y z
        loss = np.logaddexp(0.0, z) - y * z
        return float(w @ loss / wsum + 0.5 * l2 * b @ b)

    current = objective(beta)
    for _ in range(max_iter):
        p = _sigmoid(x @ beta)
        grad = x.T @ (w * (p - y)) / wsum + l2 * beta
        hess = (x.T * (w * p * (1.0 - p))) @ x / wsum + l2 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            cand = beta - t * step
            value = objective(cand)
            if value <= current + 1e-12 or t < 1e-8:
                break
            t *= 0.5
        beta, improvement, current = cand, current - value, value
        if improvement < tol and np.max(np.abs(t * step)) < 1e-8:
            break
    return beta


def length_feature(len_a: np.ndarray, len_b: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """``tanh(Δ / sd(Δ))`` with Δ = len_a − len_b, and the scale used (0 when every Δ is equal)."""
    delta = len_a - len_b
    if scale is None:
        scale = float(delta.std(ddof=1)) if delta.size > 1 else 0.0
    if scale <= 0:
        return np.zeros_like(delta), 0.0
    return np.tanh(delta / scale), scale


def length_controlled_win_rate(
    preferences: Sequence[float] | np.ndarray,
    len_a: Sequence[float] | np.ndarray,
    len_b: Sequence[float] | np.ndarray,
    *,
    covariates: np.ndarray | Sequence[Sequence[float]] | None = None,
    clusters: Sequence | None = None,
    l2: float = 1e-4,
    confidence: float = 0.95,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> LengthControlledWinRate:
    """Length-controlled win rate of A over B (see the module docstring for the model).

    ``len_a``/``len_b`` are answer lengths (characters, as AlpacaEval, or tokens); ``covariates`` is an
    optional ``(n, k)`` matrix of per-prompt features kept in the prediction. ``clusters`` groups rows
    that share a prompt for the bootstrap.
    """
    y = as_float_array(preferences, "preference", 0.0, 1.0)
    la = as_float_array(len_a, "len_a", 0.0)
    lb = as_float_array(len_b, "len_b", 0.0)
    n = y.size
    if n == 0:
        raise DataError("length-controlled win rate of zero judgements")
    if la.size != n or lb.size != n:
        raise DataError(f"{n} preferences but {la.size} and {lb.size} lengths", field="length")
    feat, scale = length_feature(la, lb)
    z = np.zeros((n, 0))
    if covariates is not None:
        z = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        if not np.all(np.isfinite(z)):
            raise DataError(
                "covariates must be finite", row=int(np.argwhere(~np.isfinite(z))[0, 0]), field="covariates"
            )
    x = np.column_stack([np.ones(n), feat, z])
    keep = np.delete(np.arange(x.shape[1]), 1)  # every column but the length term

    def lc_of(beta: np.ndarray, weights: np.ndarray | None) -> float:
        pred = _sigmoid(x[:, keep] @ beta[keep])
        return float(np.average(pred, weights=weights))

    beta = fit_logistic(x, y, l2=l2)
    lc = lc_of(beta, None)

    def stat(counts: np.ndarray) -> float:
        if counts.sum() <= 0:
            return float("nan")
        b = fit_logistic(x, y, counts, l2=l2, init=beta)
        return lc_of(b, counts)

    se, lo, hi = bootstrap_statistic(
        stat, n, clusters=clusters, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed
    )
    raw, _ = weighted_mean_se(y)
    return LengthControlledWinRate(
        lc_win_rate=lc,
        se=se,
        ci_low=lo,
        ci_high=hi,
        raw_win_rate=raw,
        intercept=float(beta[0]),
        length_coef=float(beta[1]),
        length_scale=scale,
        mean_len_a=float(la.mean()),
        mean_len_b=float(lb.mean()),
        n=n,
        confidence=confidence,
        n_bootstrap=n_bootstrap,
    )
