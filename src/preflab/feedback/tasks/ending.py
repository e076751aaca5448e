"""Ending-phrase family: finish the answer with an exact phrase."""

from __future__ import annotations

import random
from typing import Any

from .base import TaskFamily, register_family
from .length import topic_words
from .text import normalise, off_topic, words
from .vocab import ENDINGS, INSTRUCTIONS, TOPICS


@register_family
class EndingPhrase(TaskFamily):
    """ "... End your answer with the exact phrase "P"."

    Gold score, comparing word sequences (:func:`~preflab.feedback.tasks.text.words`, casefolded, curly
    apostrophes straightened, so case, punctuation and markdown do not matter: "I hope this helps!"
    ends with "I hope this helps."): 1 if the answer's last words are P's words; 0.5 if P's words occur
    together elsewhere in it; otherwise 0.4 × the fraction of P's words found among the answer's last
    |P| + 3 words (credit for getting close); 0 if empty. New tasks also ask for an answer: with
    ``topic_words`` (as in ``word_limit``) an answer naming none of the topic's words scores 0, and with
    ``min_words`` (m = 3) the score is scaled by min(1, d / m), d the answer's distinct words that are not
    P's, so the phrase alone ("The end.") earns 0.
    """

    name = "ending_phrase"
    description = "end with an exact phrase; 1 at the end, 0.5 elsewhere, partial for its words"
    min_words = 3

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        phrase = rng.choice(ENDINGS)
        prompt = (
            f"{rng.choice(INSTRUCTIONS).format(topic=topic)} Answer in one sentence. "
            f'End your answer with the exact phrase "{phrase}"'
        )
        return prompt, {"phrase": phrase, "topic_words": topic_words(topic), "min_words": self.min_words}

    def score(self, params: dict[str, Any], response: str) -> float:
        text = [w.casefold() for w in words(normalise(response))]
        target = [w.casefold() for w in words(normalise(params["phrase"]))]
        if not text or not target:
            return 0.0
        if off_topic(response, params):
            return 0.0
        return self._ending(text, target) * self._substance(text, target, params.get("min_words"))

    @staticmethod
    def _substance(text: list[str], target: list[str], m: int | None) -> float:
        """min(1, d / m) with d the distinct words of the answer outside the phrase (1 without ``min_words``)."""
        return min(1.0, len(set(text) - set(target)) / int(m)) if m else 1.0

    @staticmethod
    def _ending(text: list[str], target: list[str]) -> float:
        n = len(target)
        if text[-n:] == target:
            return 1.0
        if any(text[i : i + n] == target for i in range(len(text) - n + 1)):
            return 0.5
        tail = text[-(n + 3) :]
        return 0.4 * sum(1 for w in target if w in tail) / n
