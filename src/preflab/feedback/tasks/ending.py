"""Ending-phrase family: finish the answer with an exact phrase."""

from __future__ import annotations

import random
from typing import Any

from .base import TaskFamily, register_family
from .text import normalise, words
from .vocab import ENDINGS, INSTRUCTIONS, TOPICS


@register_family
class EndingPhrase(TaskFamily):
    """ "... End your answer with the exact phrase "P"."

    Gold score, comparing word sequences (:func:`~preflab.feedback.tasks.text.words`, casefolded, curly
    apostrophes straightened, so case, punctuation and markdown do not matter: "I hope this helps!"
    ends with "I hope this helps."): 1 if the answer's last words are P's words; 0.5 if P's words occur
    together elsewhere in it; otherwise 0.4 × the fraction of P's words found among the answer's last
    |P| + 3 words (credit for getting close); 0 if empty.
    """

    name = "ending_phrase"
    description = "end with an exact phrase; 1 at the end, 0.5 elsewhere, partial for its words"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        topic = rng.choice(sorted(TOPICS))
        phrase = rng.choice(ENDINGS)
        prompt = (
            f"{rng.choice(INSTRUCTIONS).format(topic=topic)} Answer in one sentence. "
            f'End your answer with the exact phrase "{phrase}"'
        )
        return prompt, {"phrase": phrase}

    def score(self, params: dict[str, Any], response: str) -> float:
        text = [w.casefold() for w in words(normalise(response))]
        target = [w.casefold() for w in words(normalise(params["phrase"]))]
        if not text or not target:
            return 0.0
        n = len(target)
        if text[-n:] == target:
            return 1.0
        if any(text[i : i + n] == target for i in range(len(text) - n + 1)):
            return 0.5
        tail = text[-(n + 3) :]
        return 0.4 * sum(1 for w in target if w in tail) / n
