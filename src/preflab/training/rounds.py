"""One round of an iterative schedule's data: K samples per prompt from π_t, every pair judged, win rates, pairs.

For a prompt x with samples y_1 … y_K ~ π_t(·|x) the judge gives P_ij = P(y_i ≻ y_j | x) for i < j (and
P_ji = 1 − P_ij, P_ii = ½). Each sample's win rate against the policy is estimated from the *other* samples,

    P̂(y_k ≻ π_t | x) = 1/(K − 1) · Σ_{j ≠ k} P(y_k ≻ y_j | x),

the unbiased estimate of P(y_k ≻ π_t | x) from K − 1 independent draws of π_t (Wu et al. 2024, "Self-Play
Preference Optimization", §4: the PairRM win rates of K = 5 samples). Pairs per prompt (``pairs=``):

* ``best_worst``: the sample with the highest estimated win rate against the one with the lowest (SPPO's
  and iterative DPO's choice: Xiong et al. 2024, "Iterative Preference Learning from Human Feedback",
  Alg. 2; Yuan et al. 2024, "Self-Rewarding Language Models", §2.3). Each prompt gives one pair.
* ``all``: every pair i < j, ordered by the judge's P_ij (K(K − 1)/2 pairs per prompt).

Labels follow the online schedule: hard by default; the judge's probability with ``soft_labels``; a tie
(P = ½, or equal win rates for ``best_worst``) always as the soft label ½, never a coin flip. Every pair also
carries both responses' win rates, which SPPO regresses on (its ``chosen_winrate`` / ``rejected_winrate``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data.tokenize import TokenizedExample, Tokenizer
from ..errors import DataError

PAIR_RULES = ("best_worst", "all")


@dataclass
class RoundData:
    """The training data of one round: pairs as tokenised examples (``index`` = row in the round), each row's
    win rates (n, 2) = (P̂(y_w ≻ π_t), P̂(y_l ≻ π_t)), and what the round looked like (metrics)."""

    examples: list[TokenizedExample]
    winrates: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def judge_matrices(judge: Any, prompts: Sequence[Any], texts: Sequence[Sequence[str]]) -> list[Tensor]:
    """P[i, j] = P(y_i ≻ y_j | x) for every prompt (float64, (K, K), P_ii = ½), from one ``compare_batch``
    call over all pairs i < j of all prompts; P_ji = 1 − P_ij."""
    calls = [(g, i, j) for g, ys in enumerate(texts) for i in range(len(ys)) for j in range(i + 1, len(ys))]
    probs = judge.compare_batch(
        [prompts[g] for g, _, _ in calls], [texts[g][i] for g, i, _ in calls], [texts[g][j] for g, _, j in calls]
    )
    if len(probs) != len(calls):
        raise DataError(f"the judge returned {len(probs)} probabilities for {len(calls)} pairs")
    mats = [torch.full((len(ys), len(ys)), 0.5, dtype=torch.float64) for ys in texts]
    for (g, i, j), p in zip(calls, probs, strict=True):
        p = float(p)
        if math.isnan(p) or not 0.0 <= p <= 1.0:
            raise DataError(f"the judge returned P(a ≻ b) = {p}, not a probability", row=g)
        mats[g][i, j], mats[g][j, i] = p, 1.0 - p
    return mats


def win_rates(pref: Tensor) -> Tensor:
    """P̂(y_k ≻ π_t) = mean over j ≠ k of P[k, j] (the diagonal ½ left out)."""
    k = pref.shape[0]
    return (pref.sum(dim=1) - pref.diagonal()) / (k - 1)


def choose_pairs(pref: Tensor, wins: Tensor, rule: str, soft_labels: bool) -> list[tuple[int, int, float | None]]:
    """(chosen, rejected, soft label or None for a hard one) of one prompt's samples (see the module docstring)."""
    if rule == "best_worst":
        best, worst = int(torch.argmax(wins)), int(torch.argmin(wins))
        if best == worst:  # every win rate equal: a tie between the first two samples
            return [(0, 1, 0.5)]
        tie = bool(wins[best] == wins[worst])
        return [(best, worst, float(pref[best, worst]) if soft_labels else (0.5 if tie else None))]
    if rule != "all":
        raise ValueError(f"unknown pair rule '{rule}' (known: {', '.join(PAIR_RULES)})")
    out: list[tuple[int, int, float | None]] = []
    k = pref.shape[0]
    for i in range(k):
        for j in range(i + 1, k):
            p = float(pref[i, j])
            chosen, rejected = (i, j) if p >= 0.5 else (j, i)
            out.append((chosen, rejected, max(p, 1.0 - p) if soft_labels or p == 0.5 else None))
    return out


def build_round(
    prompts: Sequence[Any],
    samples: Sequence[Sequence[Any]],
    judge: Any,
    tokenizer: Tokenizer,
    *,
    rule: str = "best_worst",
    soft_labels: bool = False,
) -> RoundData:
    """Judge every pair of each prompt's samples (``.text``, ``.token_ids``) and build the round's pairs.

    The policy trains on exactly the sampled token ids (as in the online schedule); the judge reads the text."""
    if len(samples) != len(prompts) or any(len(s) < 2 for s in samples):
        raise ValueError("sample_fn must return at least two completions per prompt")
    mats = judge_matrices(judge, prompts, [[c.text for c in s] for s in samples])
    return assemble_round(prompts, samples, mats, tokenizer, rule=rule, soft_labels=soft_labels)


def assemble_round(
    prompts: Sequence[Any],
    samples: Sequence[Sequence[Any]],
    mats: Sequence[Tensor],
    tokenizer: Tokenizer,
    *,
    rule: str = "best_worst",
    soft_labels: bool = False,
) -> RoundData:
    """The round's pairs, win rates and metrics from its samples and their judged preference matrices
    (:func:`judge_matrices`; gathered from every process when several share the judging)."""
    if len(samples) != len(prompts) or any(len(s) < 2 for s in samples):
        raise ValueError("sample_fn must return at least two completions per prompt")
    examples: list[TokenizedExample] = []
    rates: list[tuple[float, float]] = []
    ties = identical = 0
    for prompt, comps, pref in zip(prompts, samples, mats, strict=True):
        wins = win_rates(pref)
        prompt_ids = tokenizer.prompt_ids(prompt, len(examples))
        for chosen, rejected, label in choose_pairs(pref, wins, rule, soft_labels):
            row = len(examples)
            ex = tokenizer.from_ids(
                row, prompt_ids, [list(comps[chosen].token_ids), list(comps[rejected].token_ids)], prob=label
            )
            if ex is None:  # the schedule cuts (keep_end) rather than skips: a round's size is fixed
                raise DataError("a sampled pair did not fit train.max_length", row=row)
            examples.append(ex)
            rates.append((float(wins[chosen]), float(wins[rejected])))
            ties += label == 0.5
            identical += list(comps[chosen].token_ids) == list(comps[rejected].token_ids)
    winrates = torch.tensor(rates, dtype=torch.float32)
    n = len(examples)
    lengths = [len(c) for ex in examples for c in ex.completions]
    metrics = {
        "iterative/winrate_chosen": float(winrates[:, 0].mean()),
        "iterative/winrate_rejected": float(winrates[:, 1].mean()),
        "iterative/ties": ties / n,
        "iterative/identical": identical / n,
        "iterative/completion_tokens": sum(lengths) / len(lengths),
    }
    return RoundData(examples, winrates, metrics)
