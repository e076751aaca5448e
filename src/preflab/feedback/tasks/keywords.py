"""Keyword families: words an answer must use, and a word it must avoid."""

from __future__ import annotations

import random
from typing import Any

from .base import TaskFamily, register_family
from .length import topic_words
from .text import contains_word, off_topic, words_for
from .vocab import EXCLUDE_TEMPLATES, KEYWORDS, TOPICS


@register_family
class IncludeKeywords(TaskFamily):
    """ "Write ... about <topic>. Use the words 'a', 'b' and 'c'."

    Gold score: the fraction of the required words that occur as whole words (case-insensitive,
    plural -s/-es accepted); 0 for an empty answer. Tasks that set ``min_words`` (8 for new tasks) scale it
    by min(1, words / min_words): listing the three words is not two sentences. New tasks also set
    ``distinct_words``: the words counted are distinct ones, so repeating the three words does not make it two.
    """

    name = "include_keywords"
    description = "use every required word; score = fraction used"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        kws = rng.sample(KEYWORDS, 3)
        quoted = ", ".join(f"'{k}'" for k in kws[:-1]) + f" and '{kws[-1]}'"
        prompt = f"Write two sentences about {topic}. Use the words {quoted}."
        return prompt, {"keywords": kws, "min_words": 8, "distinct_words": True}

    def score(self, params: dict[str, Any], response: str) -> float:
        kws = list(params["keywords"])
        scale = min(1.0, words_for(response, params) / params["min_words"]) if params.get("min_words") else 1.0
        if not kws:
            return scale
        return scale * sum(1 for k in kws if contains_word(response, k) > 0) / len(kws)


@register_family
class ExcludeKeyword(TaskFamily):
    """ "Describe <topic> in two sentences without using the word 'w'" (w: the topic's own noun; one of
    :data:`~preflab.feedback.tasks.vocab.EXCLUDE_TEMPLATES`' phrasings).

    Gold score = 1 / (1 + c) · min(1, n / 8), with c the occurrences of w (plurals too) and n the word
    count: avoiding the word fully earns 1, each use halves, thirds … the score, and answers shorter
    than 8 words are scaled down so that saying nothing is not a way to avoid the word. When the task lists
    ``topic_words`` (the topic's other words, e.g. sea, water, waves for the ocean), an answer using none of
    them scores 0: a generic sentence avoids the word but describes nothing. New tasks set ``distinct_words``:
    n counts distinct words, so "sea sea sea …" is one word long.
    """

    name = "exclude_keyword"
    description = "avoid the obvious word; score 1/(1+uses), scaled down below 8 words"
    min_words = 8

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        word = TOPICS[topic]
        prompt = rng.choice(EXCLUDE_TEMPLATES).format(topic=topic, word=word)
        return prompt, {"forbidden": word, "topic_words": topic_words(topic, exclude=word), "distinct_words": True}

    def score(self, params: dict[str, Any], response: str) -> float:
        if off_topic(response, params):
            return 0.0
        uses = contains_word(response, params["forbidden"])
        return (1.0 / (1 + uses)) * min(1.0, words_for(response, params) / self.min_words)
