"""Records: the data layer's three preference shapes, and demonstrations for supervised fine-tuning.

Prompts and responses are plain strings or chat message lists (``[{"role": ..., "content": ...}]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
Text = str | list[Message]


@dataclass
class PreferencePair:
    """One pairwise judgement: ``chosen`` was preferred to ``rejected`` for ``prompt``.

    ``preference_prob`` is a soft label P(chosen ≻ rejected) (None = a hard label, i.e. 1.0; 0.5 = a tie).
    ``margin`` is the reward gap a reward model is asked for (Touvron et al. 2023; TRL's ``margin`` column);
    None = 0. Policy objectives ignore it.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    id: str | None = None
    weight: float = 1.0
    preference_prob: float | None = None
    margin: float | None = None
    annotator: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ranking:
    """Several responses to one prompt, ordered by ``scores`` (higher is better) or ``ranks`` (1 = best)."""

    prompt: Text
    responses: list[Text]
    scores: list[float] | None = None
    ranks: list[int] | None = None
    id: str | None = None
    annotator: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Unpaired:
    """Binary feedback on one completion (the KTO format): ``label`` True = desirable."""

    prompt: Text
    completion: Text
    label: bool
    id: str | None = None
    weight: float = 1.0
    annotator: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Demonstration:
    """One completion to imitate (supervised fine-tuning, TRL's prompt-completion / ``messages`` formats).

    No label: every demonstration is a target. A conversation's last assistant turn is ``completion`` and the
    turns before it are ``prompt``.
    """

    prompt: Text
    completion: Text
    id: str | None = None
    weight: float = 1.0
    annotator: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
