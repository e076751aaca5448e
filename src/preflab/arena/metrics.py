"""Regret curves, confidence intervals over seeds, the no-regret test and the CCE gap.

A run's record holds, per round t, the agent's probability vector(s) and the vector the round is scored
against; everything here is a function of those arrays:

- cumulative regret R(t) = Σ_{s≤t} ⟨p_s, v_s⟩ − min_a Σ_{s≤t} v_{s,a} (external regret against the best
  fixed action in hindsight; v = the revealed losses, or the arm means μ of a stochastic bandit);
- dynamic regret D(t) = Σ_{s≤t} ⟨p_s, v_s⟩ − Σ_{s≤t} min_a v_{s,a} (against the best action each round);
- dueling bandits: R(t) = Σ_{s≤t} (⟨p_s, r⟩ + ⟨q_s, r⟩)/2 with r the per-arm regret of :class:`DuelEnv`;
- repeated games: the CCE gap of the average joint play σ̄_t = (1/t) Σ_s p_s q_sᵀ, i.e. the most any player
  gains in expectation by deviating to a fixed action: max_i (E_σ̄[ℓ_i] − min_a E_{σ̄_{−i}}[ℓ_i(a, ·)]), ≥ 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def cumulative_regret(probs: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(T,) R(t) for probs (T, K) and scored vectors (T, K)."""
    cost = np.cumsum(np.einsum("tk,tk->t", probs, scored))
    return cost - np.cumsum(scored, axis=0).min(axis=1)


def dynamic_regret(probs: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """(T,) D(t): cost against the best action of every round."""
    return np.cumsum(np.einsum("tk,tk->t", probs, scored) - scored.min(axis=1))


def duel_regret(left: np.ndarray, right: np.ndarray, round_regret: np.ndarray) -> np.ndarray:
    """(T,) cumulative dueling regret for the two sides' vectors (T, K) and the per-arm regret (K,)."""
    return np.cumsum((left @ round_regret + right @ round_regret) / 2.0)


def cce_gap(p: np.ndarray, q: np.ndarray, row_loss: np.ndarray, col_loss: np.ndarray) -> np.ndarray:
    """(T,) the CCE gap of the average joint play of rounds 1..t, from the joint distribution itself."""
    T = p.shape[0]
    joint = np.cumsum(np.einsum("ti,tj->tij", p, q), axis=0) / np.arange(1, T + 1)[:, None, None]
    row_now = np.einsum("tij,ij->t", joint, row_loss)
    col_now = np.einsum("tij,ij->t", joint, col_loss)
    row_dev = (joint.sum(axis=1) @ row_loss.T).min(axis=1)  # best fixed row action vs the column marginal
    col_dev = (joint.sum(axis=2) @ col_loss).min(axis=1)
    return np.maximum(np.maximum(row_now - row_dev, col_now - col_dev), 0.0)


@dataclass
class Band:
    """Mean over seeds with a 95% Student-t confidence interval, per round."""

    mean: list[float]
    lo: list[float]
    hi: list[float]


def band(curves: np.ndarray, level: float = 0.95) -> Band:
    """(S, T) per-seed curves → mean and CI (the mean itself as both ends with one seed)."""
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    n = curves.shape[0]
    mean = curves.mean(axis=0)
    if n < 2:
        return Band(mean.tolist(), mean.tolist(), mean.tolist())
    half = stats.t.ppf(0.5 + level / 2, n - 1) * curves.std(axis=0, ddof=1) / np.sqrt(n)
    return Band(mean.tolist(), (mean - half).tolist(), (mean + half).tolist())


@dataclass
class NoRegretTest:
    """Park et al.'s two checks on the mean regret curve R̄(t).

    Trend: the share of rounds where the average regret R̄(t)/t went down, with a one-sided sign-test
    p-value against "no trend". Regression: the exponent β of R̄(t) ≈ c·t^β fitted by least squares on
    log R̄ against log t over the last 80% of the rounds where R̄ > 0, its standard error, and the one-sided
    p-value of β < 1. Verdict: ``sublinear`` when R̄(T) ≤ 0, or when β's 95% upper bound is below 1 and the
    trend p-value below 0.05; ``linear`` when β's 95% lower bound is at least 1; else ``inconclusive``.
    """

    final_regret: float
    avg_regret: float
    decrease_share: float
    trend_p: float
    exponent: float | None
    exponent_se: float | None
    exponent_p: float | None
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


def no_regret_test(mean_regret: np.ndarray) -> NoRegretTest:
    R = np.asarray(mean_regret, dtype=np.float64)
    T = R.shape[0]
    t = np.arange(1, T + 1)
    avg = R / t
    diffs = np.diff(avg)
    down = int((diffs < -1e-12).sum())
    moved = int((np.abs(diffs) > 1e-12).sum())
    trend_p = float(stats.binomtest(down, moved, 0.5, alternative="greater").pvalue) if moved else 1.0
    start = max(1, int(np.ceil(0.2 * T)))
    mask = (t >= start) & (R > 1e-12)
    exponent = se = p = None
    if R[-1] <= 0:
        verdict = "sublinear"
    elif mask.sum() >= 3:
        fit = stats.linregress(np.log(t[mask]), np.log(R[mask]))
        exponent, se = float(fit.slope), float(fit.stderr)
        df = int(mask.sum()) - 2
        if se > 0:
            p = float(stats.t.cdf((exponent - 1.0) / se, df))
            q = stats.t.ppf(0.975, df)
            upper, lower = exponent + q * se, exponent - q * se
        else:
            p = 0.0 if exponent < 1 else 1.0
            upper = lower = exponent
        tol = 1e-6  # a curve that is exactly linear (β = 1 up to rounding) is linear
        # both checks must agree for "sublinear": the OLS standard error of a cumulative curve is optimistic
        # (its residuals are correlated), so a fitted β < 1 alone is not enough
        sublinear = upper < 1 - tol and trend_p < 0.05
        verdict = "sublinear" if sublinear else "linear" if lower >= 1 - tol else "inconclusive"
    else:
        verdict = "inconclusive"
    return NoRegretTest(float(R[-1]), float(avg[-1]), down / max(len(diffs), 1), trend_p, exponent, se, p, verdict)
