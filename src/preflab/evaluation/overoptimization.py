"""Gold vs proxy reward against KL: the over-optimisation curve.

Gao, Schulman & Hilton 2022 ("Scaling Laws for Reward Model Overoptimization", arXiv:2210.10760): as a
policy is optimised against a *proxy* (a learned reward model, a noisy annotator), the proxy reward keeps
rising with the distance d = √KL(π‖π_ref) from the initial policy, while the *gold* reward rises, peaks
and falls. Their functional forms for the gold reward gain over the initial policy are

    RL:   R(d) = d (α − β log d)        peak at d* = exp(α/β − 1)
    BoN:  R(d) = d (α − β d)            peak at d* = α / (2β)

Both are linear in (α, β); we fit ``gold = c + R(d)`` by least squares, with c the gold reward of the
initial policy (free, so that a sweep whose first checkpoint already moved away from π_ref still fits).
Over-optimisation drops the same hump shape on
direct alignment algorithms too (Rafailov et al. 2024, "Scaling Laws for Reward Model Overoptimization in
Direct Alignment Algorithms"). Given checkpoints with their proxy reward, gold reward and KL, this module
builds the table (sorted by KL, gains relative to the lowest-KL point), finds the gold peak and says
whether gold fell after it while the proxy kept rising.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import DataError


@dataclass
class OverOptPoint:
    """One checkpoint: its step, KL to the reference, proxy and gold reward (optionally with SEs)."""

    step: int | None
    kl: float
    proxy: float | None
    gold: float | None
    proxy_se: float | None = None
    gold_se: float | None = None


@dataclass
class ScalingFit:
    """Gao et al.'s functional form fitted to the gold gain: coefficients, peak and fit quality."""

    form: str
    alpha: float
    beta: float
    offset: float  # c: the fitted gold reward at d = 0 (the initial policy)
    peak_d: float | None  # √KL at the predicted peak (None when the fit has no interior maximum)
    peak_kl: float | None
    r2: float


@dataclass
class OverOptimisation:
    """The over-optimisation table and its summary."""

    points: list[OverOptPoint] = field(default_factory=list)
    peak_step: int | None = None
    peak_kl: float | None = None
    peak_gold: float | None = None
    final_gold: float | None = None
    gold_drop: float | None = None  # peak − final gold (≥ 0)
    proxy_gain_after_peak: float | None = None  # final − peak-point proxy
    overoptimised: bool = False
    fit: ScalingFit | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> OverOptimisation:
        data = dict(data)
        data["points"] = [OverOptPoint(**p) for p in data.get("points", [])]
        data["fit"] = ScalingFit(**data["fit"]) if data.get("fit") else None
        return cls(**data)

    def table(self) -> list[dict]:
        """Rows for display: step, KL, √KL, proxy, gold and their gains over the lowest-KL point."""
        base = self.points[0] if self.points else None
        rows = []
        for p in self.points:
            rows.append(
                {
                    "step": p.step,
                    "kl": p.kl,
                    "sqrt_kl": float(np.sqrt(max(p.kl, 0.0))),
                    "proxy": p.proxy,
                    "gold": p.gold,
                    "proxy_gain": None if p.proxy is None or base.proxy is None else p.proxy - base.proxy,
                    "gold_gain": None if p.gold is None or base.gold is None else p.gold - base.gold,
                }
            )
        return rows


def fit_scaling_law(kl: Sequence[float], gold: Sequence[float], form: str = "rl") -> ScalingFit | None:
    """Least-squares fit of ``gold = c + d(α − β log d)`` (``form="rl"``) or ``c + d(α − β d)`` (``"bon"``).

    ``d = √KL``. Returns None with fewer than four points (three coefficients and a residual).
    """
    d = np.sqrt(np.clip(np.asarray(kl, dtype=np.float64), 0.0, None))
    y = np.asarray(gold, dtype=np.float64)
    ok = np.isfinite(y) & np.isfinite(d)
    d, y = d[ok], y[ok]
    if d.size < 4 or np.unique(d).size < 3:
        return None
    if form == "rl":
        shape = -d * np.log(np.where(d > 0, d, 1.0))  # d log d -> 0 as d -> 0
    elif form == "bon":
        shape = -d * d
    else:
        raise DataError(f"unknown scaling-law form '{form}' (use 'rl' or 'bon')", field="form")
    x = np.column_stack([np.ones_like(d), d, shape])
    (offset, alpha, beta), *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ np.array([offset, alpha, beta])
    total = np.sum((y - y.mean()) ** 2)
    r2 = float(1.0 - np.sum(resid**2) / total) if total > 0 else float("nan")
    peak_d = None
    if beta > 0:
        peak_d = float(np.exp(alpha / beta - 1.0)) if form == "rl" else float(alpha / (2.0 * beta))
        if not np.isfinite(peak_d) or peak_d <= 0:
            peak_d = None
    return ScalingFit(form, float(alpha), float(beta), float(offset), peak_d, None if peak_d is None else peak_d**2, r2)


def scaling_curve(fit: ScalingFit, d: np.ndarray) -> np.ndarray:
    """The fitted gold reward at distances ``d = √KL``."""
    d = np.asarray(d, dtype=np.float64)
    shape = -d * np.log(np.where(d > 0, d, 1.0)) if fit.form == "rl" else -d * d
    return fit.offset + fit.alpha * d + fit.beta * shape


def _points_from(rows: Sequence[Mapping | OverOptPoint]) -> list[OverOptPoint]:
    points = []
    for i, r in enumerate(rows):
        if isinstance(r, OverOptPoint):
            points.append(r)
            continue
        if "kl" not in r or r["kl"] is None:
            raise DataError("over-optimisation point without 'kl'", row=i, field="kl")

        def num(key: str, row: int = i, data: Mapping = r) -> float | None:
            value = data.get(key)
            if value is None:
                return None
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise DataError(f"'{key}' must be a number, got {value!r}", row=row, field=key) from None
            if not np.isfinite(out):
                raise DataError(f"'{key}' must be finite, got {value!r}", row=row, field=key)
            return out

        step = r.get("step")
        points.append(
            OverOptPoint(
                None if step is None else int(step),
                num("kl"),
                num("proxy"),
                num("gold"),
                num("proxy_se"),
                num("gold_se"),
            )
        )
    return points


def overoptimisation(
    rows: Sequence[Mapping | OverOptPoint],
    *,
    form: str = "rl",
    tolerance: float | None = None,
) -> OverOptimisation:
    """Build the over-optimisation table from checkpoints (dicts with step, kl, proxy, gold[, *_se]).

    The gold reward is called over-optimised when it falls after its peak by more than ``tolerance``
    (default: twice the final point's ``gold_se`` when given, else 0) while the proxy did not fall.
    """
    points = sorted(_points_from(rows), key=lambda p: (p.kl, p.step if p.step is not None else 0))
    result = OverOptimisation(points=points)
    gold = [p for p in points if p.gold is not None]
    if not gold:
        return result
    peak = max(gold, key=lambda p: p.gold)
    final = gold[-1]
    result.peak_step, result.peak_kl, result.peak_gold = peak.step, peak.kl, peak.gold
    result.final_gold = final.gold
    result.gold_drop = peak.gold - final.gold
    if peak.proxy is not None and final.proxy is not None:
        result.proxy_gain_after_peak = final.proxy - peak.proxy
    tol = tolerance if tolerance is not None else 2.0 * (final.gold_se or 0.0)
    proxy_held = result.proxy_gain_after_peak is None or result.proxy_gain_after_peak >= 0
    result.overoptimised = bool(result.gold_drop > tol and proxy_held)
    result.fit = fit_scaling_law([p.kl for p in gold], [p.gold for p in gold], form)
    return result
