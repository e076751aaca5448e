"""Tasks with gold scores: the ground truth that simulated annotators and evaluations are measured against.

A :class:`TaskFamily` makes prompts from templates (seeded) and scores any response to them with a
deterministic, documented function into [0, 1] that gives partial credit (preference learning needs
graded signal, not only pass/fail). A :class:`Task` carries everything its scorer needs in ``params``
(plain JSON), so a completions file can be re-scored later with :func:`score_task` alone.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ...errors import ConfigError, DataError
from .text import echoes


@dataclass(frozen=True)
class Task:
    """One prompt of a family; ``params`` are the scorer's inputs (limits, keywords, answers)."""

    id: str
    family: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)

    def score(self, response: str) -> float:
        """Gold score of ``response`` in [0, 1] (0 for an answer that repeats the prompt, see :func:`score_task`)."""
        return score_task(self.family, self.params, response, prompt=self.prompt)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "family": self.family, "prompt": self.prompt, "params": dict(self.params)}


class TaskFamily(ABC):
    """A template family: ``build(rng)`` -> (prompt, params); ``score(params, response)`` -> [0, 1]."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        """A prompt and the scorer's parameters, drawn with ``rng``."""

    @abstractmethod
    def score(self, params: dict[str, Any], response: str) -> float:
        """Deterministic gold score in [0, 1]."""

    def make(self, seed: int, index: int) -> Task:
        """Task ``index`` of this family for ``seed``: independent of how many tasks are drawn."""
        rng = random.Random(f"{seed}:{self.name}:{index}")
        prompt, params = self.build(rng)
        return Task(id=f"{self.name}-{seed}-{index}", family=self.name, prompt=prompt, params=params)


FAMILIES: dict[str, TaskFamily] = {}


def register_family(cls: type[TaskFamily]) -> type[TaskFamily]:
    """Class decorator: add a family (one instance) to :data:`FAMILIES` under ``cls.name``."""
    if cls.name in FAMILIES:
        raise ValueError(f"task family '{cls.name}' is registered twice")
    FAMILIES[cls.name] = cls()
    return cls


def get_family(name: str) -> TaskFamily:
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ConfigError(f"unknown task family '{name}' (known: {known})", field="family")
    return FAMILIES[name]


def score_task(family: str, params: dict[str, Any], response: str, prompt: str | None = None) -> float:
    """Gold score of ``response`` for a task given by its family name and parameters. With the ``prompt``, an
    answer that mostly repeats it scores 0 (:func:`~preflab.feedback.tasks.text.echoes`: half or more of its
    word trigrams come from the prompt), whatever the family's scorer would give."""
    if prompt is not None and echoes(response, prompt):
        return 0.0
    return get_family(family).score(params, response)


def task_from_dict(row: dict[str, Any], *, file: str | None = None, line: int | None = None) -> Task:
    """Rebuild a :class:`Task` from :meth:`Task.to_dict` output, naming the bad field on failure."""
    for key in ("family", "prompt"):
        if key not in row:
            raise DataError(f"task is missing '{key}'", file=file, line=line, field=f"task.{key}")
    if row["family"] not in FAMILIES:
        raise DataError(
            f"unknown task family '{row['family']}' (known: {', '.join(sorted(FAMILIES))})",
            file=file,
            line=line,
            field="task.family",
        )
    params = row.get("params", {})
    if not isinstance(params, dict):
        raise DataError("task params must be an object", file=file, line=line, field="task.params")
    return Task(id=str(row.get("id", "")), family=row["family"], prompt=row["prompt"], params=params)
