"""Answer-level evaluation: judge two answer lists (from any source) and collect every number.

:func:`evaluate_answers` needs only answers: win rate with CI, length-controlled win rate, null-model check, gold
score per task family, per-group results. :mod:`preflab.evaluation.policies` samples the answers from two models
first and calls it.

Prompts are strings, chat message lists, task objects with a ``prompt`` attribute (and ``family``), or
:class:`LabeledPrompt` (a plain prompt with a ``family`` and/or ``group`` label): the judge sees the task object (so
gold judges can score tasks) or the plain prompt. Prompts with a ``group`` label get per-group results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError
from .gold import gold_by_family
from .groups import per_group_results
from .length_control import length_controlled_win_rate
from .null_model import null_model_check
from .result import EvalResult
from .winrate import judge_preferences, win_rate


@dataclass(frozen=True)
class LabeledPrompt:
    """A plain prompt (text or chat messages) labelled with a task ``family`` and/or a ``group``: results are
    reported per family / per group, the judge sees only ``prompt``."""

    prompt: Any
    family: str | None = None
    group: str | None = None


def judged_prompt(prompt: Any) -> Any:
    """What a judge is given: the plain prompt of a :class:`LabeledPrompt`, any other prompt as it is."""
    return prompt.prompt if isinstance(prompt, LabeledPrompt) else prompt


def prompt_group(prompt: Any) -> str | None:
    """A prompt's group label (``group`` attribute or key), or None."""
    group = getattr(prompt, "group", None)
    if group is None and isinstance(prompt, Mapping):
        group = prompt.get("group")
    return None if group is None else str(group)


def prompt_text(prompt: Any) -> Any:
    """What the policy is asked: ``prompt.prompt`` for task objects, the prompt itself otherwise."""
    return getattr(prompt, "prompt", prompt)


def prompt_family(prompt: Any) -> str | None:
    family = getattr(prompt, "family", None)
    if family is None and isinstance(prompt, Mapping):
        family = prompt.get("family")
    return None if family is None else str(family)


def evaluate_answers(
    prompts: Sequence,
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    judge,
    *,
    gold=None,
    families: Sequence[str] | None = None,
    groups: Sequence[str | None] | None = None,
    group_judges: Mapping[str, Any] | None = None,
    lengths: tuple[Sequence[float], Sequence[float]] | None = None,
    both_orders: bool = False,
    length_control: bool = True,
    null_check: bool = True,
    null_threshold: float = 0.5,
    confidence: float = 0.95,
    n_bootstrap: int = 2000,
    lc_bootstrap: int = 200,
    seed: int = 0,
    name: str = "policy_vs_reference",
    a_name: str = "policy",
    b_name: str = "reference",
    keep_samples: bool = True,
) -> EvalResult:
    """Judge A's against B's answers on every prompt and compute the answer-level results.

    ``gold`` scores single answers (a judge with ``score``); by default ``judge`` itself when it can
    score. ``group_judges`` maps an annotator group to its judge (and gold scorer, when it can score);
    without them, ``groups`` (default: the prompts' ``group`` labels) splits the prompts into groups.
    ``lengths`` are the two answers' lengths for length control (default: characters).
    """
    n = len(prompts)
    if n == 0:
        raise DataError("no prompts to evaluate")
    if len(answers_a) != n or len(answers_b) != n:
        raise DataError(f"{n} prompts but {len(answers_a)} answers of {a_name} and {len(answers_b)} of {b_name}")
    kw = dict(confidence=confidence, seed=seed)
    labelled, prompts = prompts, [judged_prompt(p) for p in prompts]
    prefs = judge_preferences(judge, prompts, answers_a, answers_b, both_orders=both_orders)
    result = EvalResult(name=name, a_name=a_name, b_name=b_name, judge=getattr(judge, "name", type(judge).__name__))
    result.win_rate = win_rate(prefs, n_bootstrap=n_bootstrap, **kw)
    len_a, len_b = lengths if lengths is not None else ([len(a) for a in answers_a], [len(b) for b in answers_b])
    if length_control:
        result.lc_win_rate = length_controlled_win_rate(prefs, len_a, len_b, n_bootstrap=lc_bootstrap, **kw)
    if null_check:
        result.null_check = null_model_check(
            judge,
            prompts,
            answers_b,
            threshold=null_threshold,
            both_orders=both_orders,
            n_bootstrap=min(n_bootstrap, 1000),
            **kw,
        )
    scorer = gold if gold is not None else (judge if getattr(judge, "can_score", False) else None)
    fams = list(families) if families is not None else [prompt_family(p) for p in labelled]
    fams = None if all(f is None for f in fams) else [f or "other" for f in fams]
    gold_a = gold_b = None
    if scorer is not None:
        gold_a = np.asarray(scorer.score_batch(list(prompts), list(answers_a)), dtype=np.float64)
        gold_b = np.asarray(scorer.score_batch(list(prompts), list(answers_b)), dtype=np.float64)
        result.gold = gold_by_family(gold_a, gold_b, fams, preferences=prefs, n_bootstrap=n_bootstrap, **kw)
    if group_judges:
        g_prefs, g_gold_a, g_gold_b = {}, {}, {}
        for group, gj in group_judges.items():
            g_prefs[group] = judge_preferences(gj, prompts, answers_a, answers_b, both_orders=both_orders)
            if getattr(gj, "can_score", False):
                g_gold_a[group] = gj.score_batch(list(prompts), list(answers_a))
                g_gold_b[group] = gj.score_batch(list(prompts), list(answers_b))
        result.groups = per_group_results(
            g_prefs, gold_a=g_gold_a or None, gold_b=g_gold_b or None, n_bootstrap=min(n_bootstrap, 1000), **kw
        )
    labels = list(groups) if groups is not None else [prompt_group(p) for p in labelled]
    if not group_judges and any(g is not None for g in labels):  # each prompt belongs to one group
        labels = [g if g is not None else "other" for g in labels]
        result.groups = per_group_results(
            prefs, labels, gold_a=gold_a, gold_b=gold_b, n_bootstrap=min(n_bootstrap, 1000), **kw
        )
    if keep_samples:
        result.samples = [
            {
                "prompt": _plain(prompt_text(p)),
                "family": fams[i] if fams else None,
                "group": labels[i],
                "a": answers_a[i],
                "b": answers_b[i],
                "preference": float(prefs[i]),
                "gold_a": None if gold_a is None else float(gold_a[i]),
                "gold_b": None if gold_b is None else float(gold_b[i]),
            }
            for i, p in enumerate(prompts)
        ]
    return result


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | list | dict) else str(value)
