"""Per-group results: win rate and gold reward for each annotator group, and the worst group.

When users disagree (groups with conflicting tastes), an average win rate can hide a group that the
policy made worse off. MaxMin-RLHF (Chakraborty et al. 2024) optimises the worst group's utility; we
report, for every group, the win rate under that group's judgement (with its CI) and the gold reward of
A and B under that group's scorer, then name the worst group on each measure and the spread.

Two layouts are accepted:

- every group judges every prompt: ``{group: preferences}`` (one judge / annotator per group);
- each prompt belongs to one group: a flat preference list plus a parallel list of group labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import DataError
from .stats import Estimate, as_float_array, bootstrap_mean
from .winrate import WinRate, win_rate


@dataclass
class GroupResult:
    """One group's win rate of A over B, and A's / B's gold reward under the group's scorer."""

    group: str
    win_rate: WinRate
    gold_a: Estimate | None = None
    gold_b: Estimate | None = None

    @property
    def gold_gain(self) -> float | None:
        if self.gold_a is None or self.gold_b is None:
            return None
        return self.gold_a.value - self.gold_b.value


@dataclass
class GroupResults:
    """All groups, the worst group by win rate (and by A's gold reward), and the spread between groups."""

    groups: list[GroupResult] = field(default_factory=list)
    worst_by_win_rate: str | None = None
    worst_by_gold: str | None = None
    win_rate_spread: float = 0.0  # best − worst group win rate

    def to_dict(self) -> dict:
        data = asdict(self)
        for g, row in zip(self.groups, data["groups"], strict=True):
            row["gold_gain"] = g.gold_gain
        return data

    @classmethod
    def from_dict(cls, data: dict) -> GroupResults:
        groups = [
            GroupResult(
                g["group"],
                WinRate.from_dict(g["win_rate"]),
                Estimate(**g["gold_a"]) if g.get("gold_a") else None,
                Estimate(**g["gold_b"]) if g.get("gold_b") else None,
            )
            for g in data.get("groups", [])
        ]
        return cls(groups, data.get("worst_by_win_rate"), data.get("worst_by_gold"), data.get("win_rate_spread", 0.0))


def _split(values, groups: Sequence | None, name: str) -> dict[str, np.ndarray]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return {str(k): as_float_array(v, f"{name}[{k}]") for k, v in values.items()}
    if groups is None:
        raise DataError(f"{name} given as a flat list needs group labels", field="groups")
    arr = as_float_array(values, name)
    if len(groups) != arr.size:
        raise DataError(f"{len(groups)} group labels for {arr.size} values of {name}", field="groups")
    labels = np.asarray([str(g) for g in groups])
    return {g: arr[labels == g] for g in dict.fromkeys(labels.tolist())}


def per_group_results(
    preferences: Mapping[str, Sequence[float]] | Sequence[float],
    groups: Sequence | None = None,
    *,
    gold_a: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    gold_b: Mapping[str, Sequence[float]] | Sequence[float] | None = None,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> GroupResults:
    """Per-group win rates (with bootstrap CIs) and gold rewards, and the worst group.

    ``preferences`` is ``{group: P(a ≻ b) per prompt}``, or a flat list with parallel ``groups`` labels;
    ``gold_a``/``gold_b`` follow the same layout (gold reward of A's and B's answers).
    """
    prefs = _split(preferences, groups, "preferences")
    if not prefs:
        raise DataError("per-group results need at least one group")
    ga, gb = _split(gold_a, groups, "gold_a"), _split(gold_b, groups, "gold_b")
    results = []
    for i, (name, p) in enumerate(prefs.items()):
        if p.size == 0:
            raise DataError(f"group '{name}' has no judgements", field="groups")
        wr = win_rate(p, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed + i)
        est_a = (
            bootstrap_mean(ga[name], confidence=confidence, n_bootstrap=n_bootstrap, seed=seed + i)
            if name in ga
            else None
        )
        est_b = (
            bootstrap_mean(gb[name], confidence=confidence, n_bootstrap=n_bootstrap, seed=seed + i)
            if name in gb
            else None
        )
        results.append(GroupResult(name, wr, est_a, est_b))
    worst = min(results, key=lambda r: r.win_rate.win_rate)
    best = max(results, key=lambda r: r.win_rate.win_rate)
    with_gold = [r for r in results if r.gold_a is not None]
    worst_gold = min(with_gold, key=lambda r: r.gold_a.value).group if with_gold else None
    return GroupResults(results, worst.group, worst_gold, best.win_rate.win_rate - worst.win_rate.win_rate)
