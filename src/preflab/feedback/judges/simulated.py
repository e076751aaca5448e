"""A simulated annotator (or pool) behind the Judge interface, for online feedback during training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..annotators import Annotator, AnnotatorPool, Candidate
from ..judge import Judge
from .registry import register_judge


@register_judge("annotators")
class AnnotatorJudge(Judge):
    """``compare`` = the annotator's (or pool's) probability of labelling a ≻ b, noise included;
    ``label`` draws one seeded vote. Gold scores come from ``gold(prompt, response)``
    (e.g. :meth:`GoldJudge.score`)."""

    def __init__(self, annotator: Annotator | AnnotatorPool, gold: Callable[[object, str], float]) -> None:
        self.annotator = annotator
        self.gold = gold
        self.name = getattr(annotator, "name", "pool")

    @classmethod
    def from_config(
        cls, *, tasks: Sequence[Any] = (), pool: str = "bt", seed: int = 0, **kwargs: Any
    ) -> AnnotatorJudge:
        """The annotator pool ``pool`` (a preset or a spec file; ``seed``) over the gold scores of ``tasks``."""
        from ..annotators import load_pool
        from .gold import GoldJudge

        return cls(load_pool(pool, seed=seed), GoldJudge(tasks, **kwargs).score)

    def _pair(self, prompt, a, b) -> tuple[Candidate, Candidate]:
        return Candidate(a, float(self.gold(prompt, a))), Candidate(b, float(self.gold(prompt, b)))

    def compare(self, prompt, a, b) -> float:
        return self.annotator.prob(prompt, *self._pair(prompt, a, b))

    def label(self, prompt, a, b):
        """One drawn :class:`~preflab.feedback.annotators.Vote` (a is shown first)."""
        return self.annotator.vote(prompt, *self._pair(prompt, a, b))
