"""Gold / rule judge: scores with the task's gold scorer (the ground truth of the feedback lab)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ...errors import DataError
from ..judge import Judge
from ..tasks import Task
from .common import sigmoid
from .registry import register_judge


def _key(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


@register_judge("gold")
class GoldJudge(Judge):
    """``score`` = the task's gold score; ``compare`` = σ((s_a − s_b) / τ) (τ = 0: 1, 0, or ½ on a tie).

    Prompts are :class:`~preflab.feedback.tasks.Task` objects, or prompt texts / message lists of the
    ``tasks`` given at construction. A custom ``scorer(prompt, response) -> float`` replaces tasks.
    """

    name = "gold"

    def __init__(
        self,
        tasks: Iterable[Task] = (),
        *,
        temperature: float = 0.0,
        scorer: Callable[[object, str], float] | None = None,
    ) -> None:
        self.tasks = {_key(t.prompt): t for t in tasks}
        self.temperature = temperature
        self.scorer = scorer

    @classmethod
    def from_config(cls, *, tasks: Sequence[Any] = (), **kwargs: Any) -> GoldJudge:
        """The tasks' gold scorers (``temperature`` from ``judge_args``)."""
        return cls(tasks, **kwargs)

    def task_for(self, prompt) -> Task:
        if isinstance(prompt, Task):
            return prompt
        task = self.tasks.get(_key(prompt))
        if task is None:
            raise DataError(f"the gold judge has no task for prompt {str(prompt)[:80]!r}", field="prompt")
        return task

    def score(self, prompt, response) -> float:
        if self.scorer is not None:
            return float(self.scorer(prompt, response))
        return self.task_for(prompt).score(response)

    def compare(self, prompt, a, b) -> float:
        diff = self.score(prompt, a) - self.score(prompt, b)
        if self.temperature == 0:
            return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
        return sigmoid(diff / self.temperature)
