"""Win rate of A against B under a judge, with a bootstrap confidence interval.

Each held-out prompt i yields a preference ``p_i = P(a_i ≻ b_i)`` in [0, 1]: a hard judgement is 1 (win),
0 (loss) or 0.5 (tie: ties count half, as in AlpacaEval and Chatbot Arena); a judge that returns a
probability counts as a soft win of ``p_i``. The win rate is the (weighted) mean of ``p_i``; its 95%
interval is a seeded percentile bootstrap over prompts (or over clusters, when several samples share a
prompt), reported next to the normal-approximation standard error (AlpacaEval's ``standard_error``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import DataError
from .stats import as_float_array, bootstrap_mean

TIE_EPS = 1e-9


@dataclass
class WinRate:
    """Win rate of A vs B: value, SE, bootstrap CI, counts, and the per-prompt preferences kept."""

    win_rate: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    wins: int  # prompts with p > 0.5
    losses: int  # prompts with p < 0.5
    ties: int  # prompts with p == 0.5
    confidence: float = 0.95
    n_bootstrap: int = 0
    per_prompt: list[float] = field(default_factory=list)

    @property
    def significant(self) -> bool:
        """The CI excludes 0.5 (A and B differ at the chosen confidence)."""
        return self.ci_low > 0.5 or self.ci_high < 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> WinRate:
        return cls(**data)

    def __str__(self) -> str:
        pct = int(round(self.confidence * 100))
        return (
            f"{100 * self.win_rate:.1f}% ± {100 * self.se:.1f} ({pct}% CI {100 * self.ci_low:.1f}–"
            f"{100 * self.ci_high:.1f}; {self.wins}W/{self.ties}T/{self.losses}L, n={self.n})"
        )


def win_rate(
    preferences: Sequence[float] | np.ndarray,
    *,
    weights: Sequence[float] | None = None,
    clusters: Sequence | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> WinRate:
    """Win rate of A over B from per-prompt preferences ``P(a ≻ b)`` (1 win, 0 loss, 0.5 tie, or soft).

    ``clusters`` (e.g. prompt ids when a prompt has several samples) makes the bootstrap and the standard
    error resample whole clusters. Raises :class:`DataError` naming the row of a value outside [0, 1].
    """
    prefs = as_float_array(preferences, "preference", 0.0, 1.0)
    if prefs.size == 0:
        raise DataError("win rate of zero judgements: no prompts were evaluated")
    w = None
    if weights is not None:
        w = as_float_array(weights, "weight", 0.0)
        if w.shape != prefs.shape or w.sum() <= 0:
            raise DataError("weights must match the preferences and not all be zero", field="weight")
    est = bootstrap_mean(prefs, w, clusters=clusters, n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
    return WinRate(
        win_rate=est.value,
        se=est.se,
        ci_low=est.ci_low,
        ci_high=est.ci_high,
        n=int(prefs.size),
        wins=int(np.sum(prefs > 0.5 + TIE_EPS)),
        losses=int(np.sum(prefs < 0.5 - TIE_EPS)),
        ties=int(np.sum(np.abs(prefs - 0.5) <= TIE_EPS)),
        confidence=confidence,
        n_bootstrap=n_bootstrap,
        per_prompt=[float(p) for p in prefs],
    )


def judge_preferences(judge, prompts: Sequence, a: Sequence, b: Sequence, *, both_orders: bool = False) -> np.ndarray:
    """``P(a_i ≻ b_i)`` for every prompt from ``judge.compare_batch``.

    With ``both_orders`` every pair is also judged with the answers swapped and the two verdicts are
    averaged, ``(P(a ≻ b) + 1 − P(b ≻ a)) / 2``, which cancels a judge's position bias (MT-Bench, Zheng
    et al. 2023). A verdict outside [0, 1] is a :class:`DataError` naming the judge and the row.
    """
    if not (len(prompts) == len(a) == len(b)):
        raise DataError(f"{len(prompts)} prompts but {len(a)} and {len(b)} answers to compare")
    name = getattr(judge, "name", type(judge).__name__)
    p = _checked(judge.compare_batch(list(prompts), list(a), list(b)), f"judge '{name}' verdict")
    if both_orders:
        swapped = _checked(judge.compare_batch(list(prompts), list(b), list(a)), f"judge '{name}' swapped verdict")
        p = 0.5 * (p + 1.0 - swapped)
    return p


def _checked(values, what: str) -> np.ndarray:
    return as_float_array(list(values), what, 0.0, 1.0)
