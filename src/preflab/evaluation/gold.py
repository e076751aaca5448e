"""Gold reward of two policies per task family, with paired gains and bootstrap CIs.

Every held-out prompt belongs to a task family (a template of the task suite). For each family we report
the mean gold score of A's and B's answers and the *paired* gain ``mean(gold_a − gold_b)`` (same prompts,
so the pairing removes between-prompt variance), each with a percentile bootstrap CI; a family whose
gain CI lies below zero was made worse by A. The row ``all`` pools every prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import DataError
from .result import FamilyGold
from .stats import as_float_array, bootstrap_mean
from .winrate import win_rate

ALL = "all"


def gold_by_family(
    gold_a: Sequence[float] | np.ndarray,
    gold_b: Sequence[float] | np.ndarray,
    families: Sequence[str] | None = None,
    *,
    preferences: Sequence[float] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> list[FamilyGold]:
    """Per-family (and overall, ``all``) gold means of A and B and A's paired gain, with CIs.

    With ``preferences`` (the judge's P(a ≻ b) per prompt) each family also gets its win rate.
    """
    a = as_float_array(gold_a, "gold_a")
    b = as_float_array(gold_b, "gold_b")
    if a.size != b.size or a.size == 0:
        raise DataError(f"{a.size} gold scores for A but {b.size} for B (need the same, at least one)")
    labels = np.asarray([ALL] * a.size if families is None else [str(f) for f in families])
    if labels.size != a.size:
        raise DataError(f"{labels.size} family labels for {a.size} prompts", field="family")
    prefs = None if preferences is None else as_float_array(preferences, "preference", 0.0, 1.0)
    names = list(dict.fromkeys(labels.tolist()))
    if families is not None and len(names) > 1:
        names.append(ALL)
    out = []
    for i, fam in enumerate(sorted(n for n in names if n != ALL) + ([ALL] if ALL in names else [])):
        mask = np.ones(a.size, bool) if fam == ALL else labels == fam
        kw = dict(confidence=confidence, n_bootstrap=n_bootstrap, seed=seed + i)
        wr = win_rate(prefs[mask], **kw) if prefs is not None else None
        if wr is not None:
            wr.per_prompt = []  # the overall win rate keeps them; no need to repeat per family
        out.append(
            FamilyGold(
                fam,
                bootstrap_mean(a[mask], **kw),
                bootstrap_mean(b[mask], **kw),
                bootstrap_mean(a[mask] - b[mask], **kw),
                wr,
            )
        )
    return out
