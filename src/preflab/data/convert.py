"""Conversions between the record kinds: rankings -> pairs -> unpaired (and pairs -> 2-way rankings).

Rankings to pairs, by rule (ties never make a pair; they are counted in ``counts["tied_pairs"]`` and a
ranking whose responses all tie in ``counts["all_tied"]``):

* ``best-vs-worst``: the best response against the worst (the binarisation of Tunstall et al., Zephyr,
  and of HH-style preference construction from rated samples); with ``k`` > 1, also the 2nd best
  against the 2nd worst, and so on to the k-th (nested extremes, at most ``n // 2`` disjoint pairs);
* ``best-vs-random``: the best against one response drawn uniformly from those strictly worse
  (HuggingFaceH4's ``ultrafeedback_binarized``), drawn with a generator seeded by ``seed`` and the
  ranking's id (or prompt), so the draw does not depend on row order;
* ``all-pairs``: every pair of responses with different scores, the better one chosen (the
  Plackett-Luce / Bradley-Terry expansion of a ranking, as in InstructGPT's K-choose-2 comparisons);
* ``adjacent``: neighbours in the order (1st vs 2nd, 2nd vs 3rd, ...).

Among equal scores the earlier response in the list counts as better (a stable sort), which fixes who
is "best" and "worst" when several tie at the top or bottom. Each pair keeps the ranking's annotator,
group and metadata, adds ``score_chosen``/``score_rejected`` (or ``rank_chosen``/``rank_rejected``;
a per-response ``models`` list becomes ``model_chosen``/``model_rejected``),
and gets the id ``"<ranking id>:<i>><j>"`` from the response indexes ``i`` (chosen) and ``j``.

Pairs to unpaired (Ethayarajh et al., KTO, Sec. 4): ``chosen`` becomes a desirable example and
``rejected`` an undesirable one, each with the pair's weight; a soft label is kept in metadata.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..errors import DataError
from .records import Demonstration, PreferencePair, Ranking, Unpaired
from .serialize import Record

RULES = ("best-vs-worst", "best-vs-random", "all-pairs", "adjacent")
KINDS = ("pairs", "rankings", "unpaired", "demonstrations")


def kind_of(record: Record) -> str:
    """``"pairs"``, ``"rankings"``, ``"unpaired"`` or ``"demonstrations"``."""
    if isinstance(record, PreferencePair):
        return "pairs"
    if isinstance(record, Ranking):
        return "rankings"
    if isinstance(record, Unpaired):
        return "unpaired"
    if isinstance(record, Demonstration):
        return "demonstrations"
    raise TypeError(f"not a preference record: {type(record).__name__}")


def convert(
    records: Iterable[Record],
    to: str,
    rule: str = "best-vs-worst",
    seed: int = 0,
    counts: Counter[str] | None = None,
) -> list[Record]:
    """Convert every record to the kind ``to``; ``counts`` (optional) receives tie counts.

    Supported: rankings -> pairs (by ``rule``), rankings -> unpaired (through pairs), pairs -> unpaired,
    pairs -> rankings (two responses, ranks 1 and 2), and any kind to itself (a copy).
    Unpaired feedback holds no comparison, so it converts to nothing else. Demonstrations (supervised
    fine-tuning targets) convert to and from nothing: a preference is not a demonstration.
    """
    if to not in KINDS:
        raise DataError(f"unknown record kind '{to}'; expected one of {', '.join(KINDS)}")
    if rule not in RULES:
        raise DataError(f"unknown pairing rule '{rule}'; expected one of {', '.join(RULES)}")
    counts = Counter() if counts is None else counts
    out: list[Record] = []
    for record in records:
        out.extend(_convert_one(record, to, rule, seed, counts))
    return out


def _convert_one(record: Record, to: str, rule: str, seed: int, counts: Counter[str]) -> list[Record]:
    kind = kind_of(record)
    if kind == to:
        return [copy.deepcopy(record)]
    if "demonstrations" in (kind, to):
        raise DataError(
            f"{kind} cannot be converted to {to}: demonstrations (prompt/completion or messages rows, no label) "
            "are supervised fine-tuning targets, not preferences"
        )
    if kind == "rankings":
        pairs = ranking_to_pairs(record, rule, seed, counts)  # type: ignore[arg-type]
        return pairs if to == "pairs" else [u for p in pairs for u in pair_to_unpaired(p)]
    if kind == "pairs":
        return pair_to_unpaired(record) if to == "unpaired" else [pair_to_ranking(record)]  # type: ignore[arg-type,list-item]
    raise DataError(f"unpaired feedback cannot be converted to {to}: it holds no comparison between responses")


def _order(r: Ranking) -> tuple[list[int], list[float], str]:
    """Response indexes best first, a comparable key per response (higher = better), and its name."""
    if r.scores is not None:
        key = [float(s) for s in r.scores]
        name = "score"
    elif r.ranks is not None:
        key = [-float(x) for x in r.ranks]
        name = "rank"
    else:
        raise DataError(f"ranking {r.id!r} has neither scores nor ranks")
    if len(key) != len(r.responses):
        raise DataError(f"ranking {r.id!r} has {len(key)} {name}s for {len(r.responses)} responses")
    order = sorted(range(len(key)), key=lambda i: -key[i])  # stable: earlier wins ties
    return order, key, name


def ranking_to_pairs(
    r: Ranking, rule: str = "best-vs-worst", seed: int = 0, counts: Counter[str] | None = None, k: int = 1
) -> list[PreferencePair]:
    """The pairs that ``rule`` takes from one ranking (see the module docstring); ``k``: best-vs-worst only."""
    counts = Counter() if counts is None else counts
    if k < 1 or (k > 1 and rule != "best-vs-worst"):
        raise DataError(f"k = {k} pairs per ranking: k must be >= 1, and > 1 only with best-vs-worst (not {rule})")
    order, key, name = _order(r)
    n = len(order)
    if n < 2 or key[order[0]] == key[order[-1]]:
        counts["all_tied"] += 1
        counts["tied_pairs"] += (
            n * (n - 1) // 2
            if rule == "all-pairs"
            else n - 1
            if rule == "adjacent"
            else min(k, n // 2)
            if rule == "best-vs-worst"
            else 1
        )
        return []
    best = order[0]
    if rule == "best-vs-worst":
        chosen_rejected = [(order[a], order[n - 1 - a]) for a in range(min(k, n // 2))]
    elif rule == "best-vs-random":
        worse = [i for i in range(n) if key[i] < key[best]]
        rng = random.Random(f"{seed}|{r.id if r.id is not None else json.dumps(r.prompt, sort_keys=True)}")
        chosen_rejected = [(best, rng.choice(worse))]
    elif rule == "all-pairs":
        chosen_rejected = [(order[a], order[b]) for a in range(n) for b in range(a + 1, n)]
    elif rule == "adjacent":
        chosen_rejected = [(order[a], order[a + 1]) for a in range(n - 1)]
    else:
        raise DataError(f"unknown pairing rule '{rule}'; expected one of {', '.join(RULES)}")
    pairs = []
    for i, j in chosen_rejected:
        if key[i] == key[j]:
            counts["tied_pairs"] += 1
            continue
        meta = copy.deepcopy(r.metadata)
        models = meta.pop("models", None)
        for side, k in (("chosen", i), ("rejected", j)):
            meta[f"{name}_{side}"] = r.scores[k] if r.scores is not None else r.ranks[k]  # type: ignore[index]
            if isinstance(models, list) and len(models) == n:
                meta[f"model_{side}"] = models[k]
        pairs.append(
            PreferencePair(
                copy.deepcopy(r.prompt),
                copy.deepcopy(r.responses[i]),
                copy.deepcopy(r.responses[j]),
                id=None if r.id is None else f"{r.id}:{i}>{j}",
                annotator=r.annotator,
                group=r.group,
                metadata=meta,
            )
        )
    return pairs


def pair_to_unpaired(p: PreferencePair) -> list[Unpaired]:
    """``chosen`` -> desirable, ``rejected`` -> undesirable (KTO's use of paired data)."""
    out = []
    for side, label in (("chosen", True), ("rejected", False)):
        meta: dict[str, Any] = copy.deepcopy(p.metadata)
        if p.preference_prob is not None:
            meta["preference_prob"] = p.preference_prob
        out.append(
            Unpaired(
                copy.deepcopy(p.prompt),
                copy.deepcopy(getattr(p, side)),
                label,
                id=None if p.id is None else f"{p.id}:{side}",
                weight=p.weight,
                annotator=p.annotator,
                group=p.group,
                metadata=meta,
            )
        )
    return out


def pair_to_ranking(p: PreferencePair) -> Ranking:
    """A two-response ranking, chosen first (ranks 1 and 2); weight and soft label go to metadata."""
    meta: dict[str, Any] = copy.deepcopy(p.metadata)
    if p.preference_prob is not None:
        meta["preference_prob"] = p.preference_prob
    if p.weight != 1.0:
        meta["weight"] = p.weight
    return Ranking(
        copy.deepcopy(p.prompt),
        [copy.deepcopy(p.chosen), copy.deepcopy(p.rejected)],
        ranks=[1, 2],
        id=p.id,
        annotator=p.annotator,
        group=p.group,
        metadata=meta,
    )
