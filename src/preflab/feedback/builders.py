"""From sampled completions to preference data: pairs by rule, RSO, annotator votes; rankings; unpaired.

* Rule-based (``best-vs-worst``, ``best-vs-random``, ``all-pairs``, ``adjacent``): the completions,
  scored (gold scores by default, or any judge's scores), become a :class:`Ranking`, binarised by
  :func:`preflab.data.ranking_to_pairs` (ties never make a pair; they are counted).
* RSO (Liu et al. 2024, "Statistical Rejection Sampling Improves Preference Optimization", Alg. 1):
  rejection-sample from π_r(y|x) ∝ π_sft(y|x) exp(r(x,y)/β) using the SFT samples as proposals —
  accept y with probability exp((r(y) − max r)/β), without replacement, until ``num_accepted`` — then
  pair consecutive accepted samples (a first tournament round), the higher reward chosen.
* Simulated annotators (:func:`annotate_pairs`): pairs of completions are shown in a random order to a
  pool; the vote decides chosen/rejected; annotator and group are recorded on every pair.
* Unpaired (KTO's binary labels): score above a threshold (or above the prompt's mean) is desirable.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter

from ..data import PreferencePair, Ranking, Unpaired, ranking_to_pairs
from ..data.convert import RULES
from ..errors import DataError
from .annotators import AnnotatorPool, Candidate
from .samples import PromptSamples


def _meta(s: PromptSamples) -> dict:
    meta: dict = {}
    if s.task is not None:
        meta.update(family=s.task.family, task_id=s.task.id)
    return meta


def _scores(samples: list[PromptSamples], scores: list[list[float]] | None) -> list[list[float]]:
    if scores is not None:
        if len(scores) != len(samples):
            raise DataError(f"{len(scores)} score lists for {len(samples)} prompts", field="scores")
        return scores
    out = []
    for i, s in enumerate(samples):
        if s.gold_scores is None:
            raise DataError(
                "no gold scores (not a task-suite prompt); pass scores from a judge", row=i, field="gold_scores"
            )
        out.append(s.gold_scores)
    return out


def to_rankings(
    samples: list[PromptSamples],
    scores: list[list[float]] | None = None,
    *,
    annotator: str = "gold",
    group: str | None = None,
) -> list[Ranking]:
    """One :class:`Ranking` per prompt, scored by ``scores`` (default: the gold scores)."""
    all_scores = _scores(samples, scores)
    out = []
    for i, (s, sc) in enumerate(zip(samples, all_scores, strict=True)):
        if len(sc) != len(s.completions):
            raise DataError(f"{len(sc)} scores for {len(s.completions)} completions", row=i, field="scores")
        out.append(
            Ranking(
                s.prompt,
                list(s.completions),
                scores=[float(x) for x in sc],
                id=s.id,
                annotator=annotator,
                group=group,
                metadata=_meta(s),
            )
        )
    return out


def rule_pairs(
    samples: list[PromptSamples],
    rule: str = "best-vs-worst",
    scores: list[list[float]] | None = None,
    *,
    annotator: str = "gold",
    seed: int = 0,
    counts: Counter | None = None,
    k: int = 1,
) -> list[PreferencePair]:
    """Pairs chosen by ``rule`` from each prompt's scored completions (see module doc); ``k``: with
    best-vs-worst, the i-th best against the i-th worst for i = 1..k."""
    counts = Counter() if counts is None else counts
    return [
        p
        for r in to_rankings(samples, scores, annotator=annotator)
        for p in ranking_to_pairs(r, rule, seed, counts, k=k)
    ]


def rso_select(rewards: list[float], num_accepted: int, beta: float, rng: random.Random) -> list[int]:
    """RSO Algorithm 1: indexes of accepted samples, in order of acceptance."""
    if beta <= 0:
        raise DataError(f"RSO beta must be > 0 (got {beta})", field="beta")
    remaining = list(range(len(rewards)))
    accepted: list[int] = []
    num_accepted = min(num_accepted, len(rewards))
    while len(accepted) < num_accepted:
        top = max(rewards[i] for i in remaining)
        taken = []
        for i in remaining:
            if rng.random() < math.exp((rewards[i] - top) / beta):
                accepted.append(i)
                taken.append(i)
                if len(accepted) == num_accepted:
                    break
        remaining = [i for i in remaining if i not in taken]
    return accepted


def rso_pairs(
    samples: list[PromptSamples],
    rewards: list[list[float]],
    *,
    beta: float = 0.5,
    num_accepted: int = 4,
    seed: int = 0,
    annotator: str = "reward_model",
    counts: Counter | None = None,
) -> list[PreferencePair]:
    """RSO pairs: accepted samples paired consecutively, the higher reward chosen (ties counted, skipped)."""
    counts = Counter() if counts is None else counts
    rewards = _scores(samples, rewards)
    out = []
    for s, r in zip(samples, rewards, strict=True):
        rng = random.Random(f"{seed}|rso|{s.id if s.id is not None else s.prompt}")
        acc = rso_select(list(r), num_accepted, beta, rng)
        for i, j in zip(acc[0::2], acc[1::2], strict=False):
            if r[i] == r[j]:
                counts["tied_pairs"] += 1
                continue
            c, d = (i, j) if r[i] > r[j] else (j, i)
            meta = {**_meta(s), "score_chosen": r[c], "score_rejected": r[d]}
            if s.gold_scores is not None:
                meta.update(gold_chosen=s.gold_scores[c], gold_rejected=s.gold_scores[d])
            out.append(
                PreferencePair(
                    s.prompt,
                    s.completions[c],
                    s.completions[d],
                    id=f"{s.id}:{c}>{d}",
                    annotator=annotator,
                    metadata=meta,
                )
            )
    return out


PAIR_STRATEGIES = ("random", "all", *RULES)
"""``random``/``all``: annotators vote on those pairs directly. A ranking rule (``best-vs-worst``, ...):
one annotator per prompt ranks every completion (a vote on each pair, Borda count), and the rule picks
the pairs from that ranking (UltraFeedback-style binarisation; still the annotators' noisy judgement)."""


def candidate_pairs(n: int, strategy: str, pairs_per_prompt: int, rng: random.Random) -> list[tuple[int, int]]:
    """Index pairs to show annotators: ``all`` (every pair) or ``random`` (distinct pairs, drawn)."""
    every = list(itertools.combinations(range(n), 2))
    if strategy == "all":
        return every
    if strategy == "random":
        return rng.sample(every, min(pairs_per_prompt, len(every)))
    raise DataError(f"unknown pair strategy '{strategy}' (use {', '.join(PAIR_STRATEGIES)})", field="pairs")


def _gold_agreement(counts: Counter, g_chosen: float, g_rejected: float) -> None:
    counts[
        "agrees_with_gold" if g_chosen > g_rejected else "against_gold" if g_chosen < g_rejected else "gold_tie"
    ] += 1


def annotate_pairs(
    samples: list[PromptSamples],
    pool: AnnotatorPool,
    *,
    strategy: str = "random",
    pairs_per_prompt: int = 1,
    seed: int = 0,
    counts: Counter | None = None,
) -> list[PreferencePair]:
    """Ask ``pool`` about pairs of each prompt's completions (shown in a random order)."""
    counts = Counter() if counts is None else counts
    gold = _scores(samples, None)
    out = []
    for s, g in zip(samples, gold, strict=True):
        rng = random.Random(f"{seed}|pairs|{s.id if s.id is not None else s.prompt}")
        for i, j in candidate_pairs(len(s.completions), strategy, pairs_per_prompt, rng):
            first, second = (i, j) if rng.random() < 0.5 else (j, i)
            vote = pool.vote(
                s.prompt, Candidate(s.completions[first], g[first]), Candidate(s.completions[second], g[second])
            )
            c, d = (first, second) if vote.a_wins else (second, first)
            _gold_agreement(counts, g[c], g[d])
            meta = {
                **_meta(s),
                "gold_chosen": g[c],
                "gold_rejected": g[d],
                "shown_first": "chosen" if c == first else "rejected",
                "annotator_prob": vote.prob if vote.a_wins else 1.0 - vote.prob,
                "flipped": vote.flipped,
            }
            out.append(
                PreferencePair(
                    s.prompt,
                    s.completions[c],
                    s.completions[d],
                    id=f"{s.id}:{c}>{d}",
                    annotator=vote.annotator,
                    group=vote.group,
                    metadata=meta,
                )
            )
    return out


def annotator_pairs(
    samples: list[PromptSamples],
    pool: AnnotatorPool,
    *,
    strategy: str = "random",
    pairs_per_prompt: int = 1,
    seed: int = 0,
    counts: Counter | None = None,
) -> list[PreferencePair]:
    """Preference pairs labelled by ``pool`` with any of :data:`PAIR_STRATEGIES`.

    ``pairs_per_prompt``: with ``random``, that many distinct pairs are shown; with ``best-vs-worst``, the
    i-th best against the i-th worst for i = 1..pairs_per_prompt (at most half the completions); the other
    rules take every pair they define.
    """
    if strategy not in PAIR_STRATEGIES:
        raise DataError(f"unknown pair strategy '{strategy}' (use {', '.join(PAIR_STRATEGIES)})", field="pairs")
    counts = Counter() if counts is None else counts
    if strategy in ("random", "all"):
        return annotate_pairs(
            samples, pool, strategy=strategy, pairs_per_prompt=pairs_per_prompt, seed=seed, counts=counts
        )
    out = []
    k = pairs_per_prompt if strategy == "best-vs-worst" else 1
    for r in annotate_rankings(samples, pool, seed=seed):
        gold = r.metadata.pop("gold_scores")
        for p in ranking_to_pairs(r, strategy, seed, counts, k=k):
            i, j = r.responses.index(p.chosen), r.responses.index(p.rejected)  # same text, same gold score
            p.metadata.update(gold_chosen=gold[i], gold_rejected=gold[j])
            _gold_agreement(counts, gold[i], gold[j])
            out.append(p)
    return out


def annotate_rankings(samples: list[PromptSamples], pool: AnnotatorPool, *, seed: int = 0) -> list[Ranking]:
    """One annotator (drawn from the pool) per prompt votes on every pair; scores = its wins (Borda)."""
    gold = _scores(samples, None)
    out = []
    for s, g in zip(samples, gold, strict=True):
        member = pool.draw()
        wins = [0.0] * len(s.completions)
        rng = random.Random(f"{seed}|rank|{s.id if s.id is not None else s.prompt}")
        for i, j in itertools.combinations(range(len(s.completions)), 2):
            first, second = (i, j) if rng.random() < 0.5 else (j, i)
            vote = member.vote(
                s.prompt,
                Candidate(s.completions[first], g[first]),
                Candidate(s.completions[second], g[second]),
                rng=pool.rng,
            )
            wins[first if vote.a_wins else second] += 1.0
        out.append(
            Ranking(
                s.prompt,
                list(s.completions),
                scores=wins,
                id=s.id,
                annotator=member.name,
                group=member.group,
                metadata={**_meta(s), "gold_scores": list(g)},
            )
        )
    return out


def to_unpaired(
    samples: list[PromptSamples],
    scores: list[list[float]] | None = None,
    *,
    threshold: float | None = None,
    annotator: str = "gold",
    counts: Counter | None = None,
) -> list[Unpaired]:
    """Desirable iff score > threshold (or, with ``threshold=None``, above the prompt's mean score);
    undesirable iff below; completions exactly at the threshold get no label (counted as ``at_threshold``)."""
    counts = Counter() if counts is None else counts
    out = []
    for s, sc in zip(samples, _scores(samples, scores), strict=True):
        cut = threshold if threshold is not None else sum(sc) / max(1, len(sc))
        for k, (comp, v) in enumerate(zip(s.completions, sc, strict=True)):
            if v == cut:
                counts["at_threshold"] += 1
                continue
            out.append(
                Unpaired(
                    s.prompt, comp, v > cut, id=f"{s.id}:{k}", annotator=annotator, metadata={**_meta(s), "score": v}
                )
            )
    return out
