"""The judge interface: who says which answer is better.

Every judge answers ``compare(prompt, a, b) -> P(a ≻ b)`` in [0, 1] (0.5 = tie / no preference).
Judges that score single responses also implement ``score(prompt, response) -> float``.
Batched variants have default implementations that loop; judges backed by a model override them.
A judge class registered with :func:`preflab.feedback.judges.register_judge` is built by name from a config
through :meth:`Judge.from_config`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class Judge(ABC):
    name: str = "judge"

    @classmethod
    def from_config(cls, *, tasks: Sequence[Any] = (), **kwargs: Any) -> Judge:
        """Build the judge from a config's ``judge_args`` (``kwargs``) and the run's ``tasks`` (the gold-scored
        task objects, for judges that score with them). The default passes ``kwargs`` to the constructor."""
        return cls(**kwargs)

    @abstractmethod
    def compare(self, prompt, a, b) -> float:
        """P(a ≻ b | prompt)."""

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        return [self.compare(p, x, y) for p, x, y in zip(prompts, a, b, strict=True)]

    def score(self, prompt, response) -> float:
        raise NotImplementedError(f"{type(self).__name__} only compares pairs; it has no score()")

    def score_batch(self, prompts: list, responses: list) -> list[float]:
        return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]

    @property
    def can_score(self) -> bool:
        return type(self).score is not Judge.score
