"""Sentiment family: write a positive or a negative review; scored with the VADER lexicon.

VADER (Hutto & Gilbert 2014, "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social
Media Text") ships its lexicon in the ``vaderSentiment`` package; its ``compound`` score is in [-1, 1].
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from .base import TaskFamily, register_family
from .text import off_topic, words
from .vocab import PRODUCTS, REVIEW_TEMPLATES

_NOT_PRODUCT = {"a", "an", "pair", "of", "new"}


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    """VADER's normalised compound sentiment of ``text`` in [-1, 1]."""
    return float(_analyzer().polarity_scores(text)["compound"])


@register_family
class Sentiment(TaskFamily):
    """ "Write a short <positive|negative> review of <product>."

    Gold score = (1 + s · compound) / 2 with s = +1 for positive, −1 for negative targets and VADER's
    compound score of the answer; 0 for an answer without words (neutral text earns 0.5). Tasks with
    ``"credit": "signed"`` (every new task) score max(0, s · compound) instead: only sentiment in the
    requested direction earns credit, so neutral or constant text earns 0 and no fixed answer can
    satisfy both targets; and such tasks list ``product_words`` (the product's own words: "coffee", "maker"),
    one of which the review must name, or it scores 0.
    """

    name = "sentiment"
    description = "review with the requested sentiment; VADER compound mapped to [0, 1]"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        target = rng.choice(["positive", "negative"])
        product = rng.choice(PRODUCTS)
        prompt = rng.choice(REVIEW_TEMPLATES).format(target=target, product=product)
        named = [w for w in product.split() if w not in _NOT_PRODUCT]
        return prompt, {"target": target, "credit": "signed", "product_words": named}

    def score(self, params: dict[str, Any], response: str) -> float:
        if not words(response):
            return 0.0
        sign = 1.0 if params["target"] == "positive" else -1.0
        if off_topic(response, params, key="product_words"):
            return 0.0
        if params.get("credit") == "signed":
            return max(0.0, sign * compound(response))
        return (1.0 + sign * compound(response)) / 2.0
