"""A trained mixture reward model's groups (MaxMin-RLHF, Chakraborty et al. 2024, §4): every annotator's posterior
group memberships over all their labels, the group prior, and how well the groups match planted ones.

The E-step is :func:`preflab.objectives.maxmin.responsibilities` (the one the ``maxmin_em`` loss uses during
training) over the whole dataset: γ_{a,k} ∝ prior_k Π_{i ∈ a} σ(r_k(y_w,i) − r_k(y_l,i)), with the K group rewards
r_k read from the model's ``mixture`` head (a :class:`~preflab.feedback.judges.RewardModelJudge` reads all K).
Agreement with known groups is the adjusted Rand index (Hubert & Arabie 1985): 1 for the same partition up to
relabelling, ≈ 0 for a random one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import Any

import torch

from ..errors import ConfigError, DataError

__all__ = ["AnnotatorGroups", "adjusted_rand_index", "annotator_groups"]


@dataclass
class AnnotatorGroups:
    """annotators: sorted names; responsibilities: (A, K) rows in that order; prior: (K,) mean responsibility;
    assignment: each annotator's most likely group; log_likelihood: the data's marginal log-likelihood."""

    annotators: list[str]
    responsibilities: list[list[float]]
    prior: list[float]
    assignment: list[int]
    log_likelihood: float

    def group_of(self, annotator: str) -> int:
        return self.assignment[self.annotators.index(annotator)]


def annotator_groups(judge: Any, pairs: Sequence[Any], *, iterations: int = 20) -> AnnotatorGroups:
    """Responsibilities of every annotator of ``pairs`` under the mixture model behind ``judge`` (a
    ``reward_model`` judge of a ``mixture``-head model); the prior is re-estimated with the E-step for
    ``iterations`` rounds (rewards fixed)."""
    from ..objectives.game_inputs import GroupPairInputs
    from ..objectives.maxmin import responsibilities

    if getattr(getattr(judge, "head", None), "name", None) != "mixture":
        raise ConfigError("annotator groups need a mixture reward model (algorithm: maxmin_em)", field="model")
    if not pairs:
        raise DataError("no pairs to assign annotators from", field="pairs")
    names = []
    for i, p in enumerate(pairs):
        if not getattr(p, "annotator", None):
            raise DataError("a mixture's groups are per annotator; this pair names none", row=i, field="annotator")
        names.append(str(p.annotator))
    annotators = sorted(set(names))
    ids = torch.tensor([annotators.index(a) for a in names])
    n = len(pairs)
    out = judge.outputs_batch([p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    inputs = GroupPairInputs(
        reward_chosen=out[:n].double(),
        reward_rejected=out[n:].double(),
        annotator=ids,
        weight=torch.tensor([float(p.weight) for p in pairs], dtype=torch.float64),
    )
    for _ in range(iterations):
        gamma, marginal = responsibilities(inputs)
        inputs.prior = gamma.mean(0)
    gamma, marginal = responsibilities(inputs)
    return AnnotatorGroups(
        annotators, gamma.tolist(), gamma.mean(0).tolist(), gamma.argmax(1).tolist(), float(marginal.sum())
    )


def adjusted_rand_index(labels_a: Sequence[Any], labels_b: Sequence[Any]) -> float:
    """Adjusted Rand index of two partitions of the same items (Hubert & Arabie 1985), from the contingency
    table n_ij: (Σ C(n_ij,2) − E) / (½(Σ C(a_i,2) + Σ C(b_j,2)) − E), E = Σ C(a_i,2) Σ C(b_j,2) / C(n,2).
    1.0 when both partitions are trivial in the same way (the formula's 0/0)."""
    if len(labels_a) != len(labels_b):
        raise ValueError(f"{len(labels_a)} labels vs {len(labels_b)}")
    pairs: dict[tuple[Any, Any], int] = {}
    rows: dict[Any, int] = {}
    cols: dict[Any, int] = {}
    for a, b in zip(labels_a, labels_b, strict=True):
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
        rows[a] = rows.get(a, 0) + 1
        cols[b] = cols.get(b, 0) + 1
    index = sum(comb(v, 2) for v in pairs.values())
    sum_a, sum_b = sum(comb(v, 2) for v in rows.values()), sum(comb(v, 2) for v in cols.values())
    total = comb(len(labels_a), 2)
    expected = sum_a * sum_b / total if total else 0.0
    best = (sum_a + sum_b) / 2
    if best == expected:
        return 1.0
    return (index - expected) / (best - expected)
