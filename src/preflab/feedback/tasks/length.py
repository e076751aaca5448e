"""Length families: an upper word limit (concise answers) and a lower one (detailed answers)."""

from __future__ import annotations

import random
from typing import Any

from .base import TaskFamily, register_family
from .text import distinct_words, off_topic, word_count
from .vocab import ASSOCIATED, INSTRUCTIONS, TOPICS

_STOP = {"the", "a", "an", "at", "of", "in"}


def topic_words(topic: str, exclude: str | None = None) -> list[str]:
    """Words that put an answer on ``topic``: the topic phrase's words, its head noun and its
    :data:`~preflab.feedback.tasks.vocab.ASSOCIATED` words (without ``exclude``)."""
    out = [w for w in topic.split() if w not in _STOP] + [TOPICS[topic], *ASSOCIATED[topic]]
    return [w for w in dict.fromkeys(out) if w != exclude]


@register_family
class WordLimit(TaskFamily):
    """ "... Answer in at most k words."

    Gold score, with w the response's word count (:func:`~preflab.feedback.tasks.text.words`):
    0 if w = 0; 1 if w ≤ k; k / w otherwise (twice the limit earns 0.5, four times 0.25). The answer must be
    on topic: when the task lists ``topic_words`` (the topic's own words and
    :data:`~preflab.feedback.tasks.vocab.ASSOCIATED` ones), an answer using none of them scores 0, so "ok"
    or any short generic sentence earns nothing. And it must say something: when the task sets ``min_words``
    (m = 4 for new tasks), the score is scaled by min(1, d / m) with d the answer's distinct words, so the
    bare topic word ("ocean") earns 0.25 and a loop of two words 0.5, however short.
    """

    name = "word_limit"
    description = "answer within a word limit; score min(1, k / words)"
    limits = (8, 10, 12, 15, 20)
    min_words = 4

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        k = rng.choice(self.limits)
        prompt = f"{rng.choice(INSTRUCTIONS).format(topic=topic)} Answer in at most {k} words."
        return prompt, {"max_words": k, "topic_words": topic_words(topic), "min_words": self.min_words}

    def score(self, params: dict[str, Any], response: str) -> float:
        k, w = int(params["max_words"]), word_count(response)
        if w == 0:
            return 0.0
        if off_topic(response, params):
            return 0.0
        substance = min(1.0, distinct_words(response) / int(params["min_words"])) if params.get("min_words") else 1.0
        return substance * (1.0 if w <= k else k / w)


@register_family
class MinWords(TaskFamily):
    """ "... Write at least k words."

    Gold score: min(1, w / k) with w the word count (half the length earns 0.5).
    """

    name = "min_words"
    description = "answer with at least k words; score min(1, words / k)"
    limits = (60, 80, 100, 120)

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        k = rng.choice(self.limits)
        prompt = f"{rng.choice(INSTRUCTIONS).format(topic=topic)} Write at least {k} words."
        return prompt, {"min_words": k}

    def score(self, params: dict[str, Any], response: str) -> float:
        return min(1.0, word_count(response) / int(params["min_words"]))
