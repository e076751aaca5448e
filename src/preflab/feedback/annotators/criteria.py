"""What simulated annotators care about: named criteria of a response, each roughly in [0, 1].

A criterion maps ``(text, gold)`` to a number; annotators weigh several of them into a utility.
``gold`` is the task's gold score; the others are surface properties that real annotators are known to
reward or penalise (length: Singhal et al. 2023, "A Long Way to Go: Investigating Length Correlations in
RLHF"; Dubois et al. 2024, length-controlled AlpacaEval).
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ConfigError
from ..tasks.text import words

Criterion = Callable[[str, float], float]

LENGTH_SCALE = 100.0
"""Word count at which ``verbosity`` saturates (and ``brevity`` reaches 0)."""


def gold(text: str, gold_score: float) -> float:
    """The task's gold score."""
    return gold_score


def brevity(text: str, gold_score: float) -> float:
    """1 − min(1, words / 100): shorter is better (the 'concise' group's taste)."""
    return 1.0 - min(1.0, len(words(text)) / LENGTH_SCALE)


def verbosity(text: str, gold_score: float) -> float:
    """min(1, words / 100): longer is better (the 'detailed' group's taste)."""
    return min(1.0, len(words(text)) / LENGTH_SCALE)


def diversity(text: str, gold_score: float) -> float:
    """Distinct words / words (type-token ratio, casefolded); 0 for an empty text."""
    ws = [w.casefold() for w in words(text)]
    return len(set(ws)) / len(ws) if ws else 0.0


CRITERIA: dict[str, Criterion] = {
    "gold": gold,
    "brevity": brevity,
    "verbosity": verbosity,
    "diversity": diversity,
}


def get_criterion(c: str | Criterion) -> Criterion:
    """A criterion by name (see :data:`CRITERIA`) or a callable ``(text, gold) -> float`` as is."""
    if callable(c):
        return c
    if c not in CRITERIA:
        raise ConfigError(f"unknown criterion '{c}' (known: {', '.join(CRITERIA)})", field="criteria")
    return CRITERIA[c]
