"""Reward-model evaluation on held-out preference pairs: accuracy, calibration, agreement with gold.

For a pair (x, y_w, y_l) with label p = P(y_w ≻ y_l) (1 for a hard label, ½ for a tie) a Bradley–Terry reward
model predicts q = σ(r(x, y_w) − r(x, y_l)) (Bradley & Terry 1952; Stiennon et al. 2020).

* **accuracy**: the share of non-tied pairs whose order the rewards get right ((q > ½) = (p > ½); q = ½ counts
  ½), TRL's ``accuracy``; per task family too, for held-out families.
* **expected calibration error** (Guo et al. 2017, "On Calibration of Modern Neural Networks"), binary form:
  the predicted winner's confidence c = max(q, 1 − q) against how often it wins, o = p if q ≥ ½ else 1 − p,
  over ``n_bins`` equal-width bins of [½, 1]: ECE = Σ_b (n_b / N) |mean_b(c) − mean_b(o)|. (Binning q over
  [0, 1] instead would only measure how close q is to 1 when every pair is oriented winner-first.)
* **gold agreement**: on pairs that carry gold scores (``metadata.gold_chosen`` / ``gold_rejected``, written by
  ``preflab annotate`` and the quickstart from the task suite's gold scorers), the share of pairs with unequal
  gold scores that the rewards order like gold does — against the truth, where ``accuracy`` is against the
  (possibly noisy) labels.
* **in / out of distribution**: given the task families the model was trained on (``train_families``), the same
  accuracy and gold agreement over the pairs of those families (``in_family``) and over the pairs of every other
  family (``out_of_family``, held-out task families), so a reward model that only memorised its families shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DataError

__all__ = [
    "ReliabilityBin",
    "RewardModelEval",
    "evaluate_reward_model",
    "expected_calibration_error",
    "families_of",
    "reward_pair_metrics",
]


@dataclass
class ReliabilityBin:
    """One bin of the reliability diagram: confidences in [lo, hi), their mean and the mean outcome."""

    lo: float
    hi: float
    count: int
    confidence: float
    accuracy: float


@dataclass
class RewardModelEval:
    """Results on ``n`` held-out pairs (see the module docstring); NaN where nothing was measurable."""

    n: int
    accuracy: float
    ties: int
    mean_margin: float
    ece: float
    reliability: list[ReliabilityBin]
    gold_agreement: float | None = None
    gold_pairs: int = 0
    mean_uncertainty: float | None = None  # ensembles: mean std of the members' rewards
    families: dict[str, dict[str, float]] = field(default_factory=dict)
    train_families: list[str] | None = None
    in_family: dict[str, float] | None = None  # n, accuracy (and gold_agreement) over the training families' pairs
    out_of_family: dict[str, float] | None = None  # the same over every other family's pairs (held-out families)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def expected_calibration_error(
    probs: Sequence[float],
    labels: Sequence[float],
    n_bins: int = 10,
) -> tuple[float, list[ReliabilityBin]]:
    """ECE of predictions ``probs`` (q = P(first ≻ second)) against ``labels`` (p, in [0, 1]) and the reliability
    diagram's non-empty bins, in the binary confidence form of the module docstring."""
    if len(probs) != len(labels):
        raise DataError(f"{len(probs)} predictions for {len(labels)} labels")
    if not probs:
        return math.nan, []
    sums = [[0, 0.0, 0.0] for _ in range(n_bins)]
    for q, p in zip(probs, labels, strict=True):
        conf, outcome = (q, p) if q >= 0.5 else (1.0 - q, 1.0 - p)
        b = min(int((conf - 0.5) * 2 * n_bins + 1e-9), n_bins - 1)  # 1e-9: 0.6 falls in [0.6, 0.65)
        sums[b][0] += 1
        sums[b][1] += conf
        sums[b][2] += outcome
    total, ece, bins = len(probs), 0.0, []
    for b, (count, conf, out) in enumerate(sums):
        if count:
            ece += count / total * abs(conf / count - out / count)
            lo = 0.5 + b / (2 * n_bins)
            bins.append(ReliabilityBin(lo, lo + 1 / (2 * n_bins), int(count), conf / count, out / count))
    return ece, bins


def reward_pair_metrics(
    chosen: Sequence[float],
    rejected: Sequence[float],
    labels: Sequence[float | None],
    gold: Sequence[tuple[float, float] | None] | None = None,
    families: Sequence[str | None] | None = None,
    n_bins: int = 10,
    train_families: Sequence[str] | None = None,
) -> RewardModelEval:
    """Accuracy, ECE and gold agreement from the rewards of each pair's chosen and rejected response; per family,
    and (``train_families``) in and out of the families the model was trained on."""
    n = len(chosen)
    if len(rejected) != n or len(labels) != n:
        raise DataError(f"{n} chosen rewards, {len(rejected)} rejected rewards and {len(labels)} labels")
    p = [1.0 if x is None else float(x) for x in labels]
    d = [float(a) - float(b) for a, b in zip(chosen, rejected, strict=True)]
    q = [_sigmoid(x) for x in d]
    ece, bins = expected_calibration_error(q, p, n_bins)
    acc, ties = _accuracy(d, p)
    agree, gold_n = _gold_agreement(d, gold) if gold is not None else (None, 0)
    result = RewardModelEval(n, acc, ties, sum(d) / n if n else math.nan, ece, bins, agree, gold_n)
    if families is not None:
        for fam in sorted({f for f in families if f is not None}):
            idx = [i for i, f in enumerate(families) if f == fam]
            fam_acc, _ = _accuracy([d[i] for i in idx], [p[i] for i in idx])
            row = {"n": float(len(idx)), "accuracy": fam_acc}
            if gold is not None:
                fam_gold, _ = _gold_agreement([d[i] for i in idx], [gold[i] for i in idx])
                row["gold_agreement"] = math.nan if fam_gold is None else fam_gold
            result.families[fam] = row
    if train_families is not None and families is not None:
        seen = set(train_families)
        result.train_families = sorted(seen)
        inside = [i for i, f in enumerate(families) if f is not None and f in seen]
        outside = [i for i, f in enumerate(families) if f is not None and f not in seen]
        result.in_family = _subset(d, p, gold, inside) if inside else None
        result.out_of_family = _subset(d, p, gold, outside) if outside else None
    return result


def _subset(
    d: list[float], p: list[float], gold: Sequence[tuple[float, float] | None] | None, idx: list[int]
) -> dict[str, float]:
    acc, _ = _accuracy([d[i] for i in idx], [p[i] for i in idx])
    row = {"n": float(len(idx)), "accuracy": acc}
    if gold is not None:
        agree, n_gold = _gold_agreement([d[i] for i in idx], [gold[i] for i in idx])
        row["gold_agreement"] = math.nan if agree is None else agree
        row["gold_pairs"] = float(n_gold)
    return row


def _accuracy(d: list[float], p: list[float]) -> tuple[float, int]:
    scored = [(x, y) for x, y in zip(d, p, strict=True) if y != 0.5]
    if not scored:
        return math.nan, len(d)
    right = sum(0.5 if x == 0 else float((x > 0) == (y > 0.5)) for x, y in scored)
    return right / len(scored), len(d) - len(scored)


def _gold_agreement(d: list[float], gold: Sequence[tuple[float, float] | None]) -> tuple[float | None, int]:
    rows = [(x, g[0] - g[1]) for x, g in zip(d, gold, strict=True) if g is not None and g[0] != g[1]]
    if not rows:
        return None, 0
    return sum(0.5 if x == 0 else float((x > 0) == (gd > 0)) for x, gd in rows) / len(rows), len(rows)


def _gold_of(pair: Any) -> tuple[float, float] | None:
    meta = getattr(pair, "metadata", None) or {}
    try:
        return float(meta["gold_chosen"]), float(meta["gold_rejected"])
    except (KeyError, TypeError, ValueError):
        return None


def families_of(pairs: Sequence[Any]) -> list[str | None]:
    """Each pair's task family (``metadata.family``, written by ``preflab annotate`` from the task suite)."""
    return [(getattr(pr, "metadata", None) or {}).get("family") for pr in pairs]


def evaluate_reward_model(
    judge: Any, pairs: Sequence[Any], *, n_bins: int = 10, train_families: Sequence[str] | None = None
) -> RewardModelEval:
    """Score every pair's two responses with ``judge`` (a reward model judge, or an ensemble) and measure;
    ``train_families``: the families of the training data, for the in- / out-of-distribution split."""
    if not pairs:
        raise DataError("no held-out pairs to evaluate the reward model on", field="pairs")
    prompts = [pr.prompt for pr in pairs]
    both = list(pairs)
    uncertainty = getattr(judge, "score_with_uncertainty", None)
    if not getattr(judge, "can_score", True):  # a pairwise model (GPM): its logit d = log q/(1 − q) per pair
        q = judge.compare_batch(prompts, [pr.chosen for pr in both], [pr.rejected for pr in both])
        eps = 1e-12
        rewards = [math.log(max(x, eps) / max(1.0 - x, eps)) for x in q] + [0.0] * len(q)
        stds = None
    elif callable(uncertainty):
        rewards, stds = uncertainty(prompts * 2, [pr.chosen for pr in both] + [pr.rejected for pr in both])
    else:
        rewards, stds = judge.score_batch(prompts * 2, [pr.chosen for pr in both] + [pr.rejected for pr in both]), None
    n = len(both)
    gold = [_gold_of(pr) for pr in both]
    families = families_of(both)
    result = reward_pair_metrics(
        rewards[:n],
        rewards[n:],
        [pr.preference_prob for pr in both],
        gold if any(g is not None for g in gold) else None,
        families if any(f is not None for f in families) else None,
        n_bins,
        train_families,
    )
    if stds is not None:
        result.mean_uncertainty = sum(stds) / len(stds)
    return result
