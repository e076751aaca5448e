"""Format families: bulleted lists, JSON objects, all-capitals answers."""

from __future__ import annotations

import json
import random
import re
from typing import Any

from .base import TaskFamily, register_family
from .text import cased_letters, words
from .vocab import BULLET_TEMPLATES, CATEGORIES, ENTITIES, JSON_TEMPLATES, QUESTIONS

_BULLET = re.compile(r"^\s*[-*•]\s+\S")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S")
_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@register_family
class BulletList(TaskFamily):
    """ "List k <things> as a bulleted list ... nothing else."

    Each non-empty line earns format credit: 1 for a bullet (``-``, ``*`` or ``•`` and a space), 0.4 for
    a numbered item (``1.`` / ``1)``: a list, but not the requested format), 0 otherwise; f = the mean
    credit. With m = bullets + numbered items, the count match is c = max(0, 1 − |m − k| / k).
    Gold score = f · (½ + ½ c); 0 if empty. So "- a\n- b\n- c" for k = 3 earns 1, the same list numbered
    0.4, an intro line before three bullets 0.75. New tasks set ``distinct_items``: an item without a word or
    repeating an earlier item (same words, casefolded) is neither credited nor counted, so "- Bird" three
    times for k = 3 earns 1/3 · (½ + ½ · 1/3) ≈ 0.22.
    """

    name = "bullet_list"
    description = "a bulleted list of exactly k items and nothing else"
    numbered_credit = 0.4

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        k = rng.randint(3, 6)
        what = rng.choice(CATEGORIES)
        prompt = rng.choice(BULLET_TEMPLATES).format(k=k, what=what)
        return prompt, {"count": k, "distinct_items": True}

    def score(self, params: dict[str, Any], response: str) -> float:
        lines = [ln for ln in response.splitlines() if ln.strip()]
        if not lines:
            return 0.0
        k = int(params["count"])
        kinds = _item_kinds(lines, distinct=bool(params.get("distinct_items")))
        bullets, numbered = kinds.count("bullet"), kinds.count("numbered")
        fmt = (bullets + self.numbered_credit * numbered) / len(lines)
        count = max(0.0, 1.0 - abs(bullets + numbered - k) / k)
        return fmt * (0.5 + 0.5 * count)


def _item_kinds(lines: list[str], *, distinct: bool) -> list[str | None]:
    """Each line's kind: "bullet", "numbered" or None (prose). With ``distinct``, an item without a word or
    repeating an earlier item's words (casefolded) is None too: it earns nothing but still counts as a line."""
    seen: set[tuple[str, ...]] = set()
    kinds: list[str | None] = []
    for ln in lines:
        kind = "bullet" if _BULLET.match(ln) else "numbered" if _NUMBERED.match(ln) else None
        if kind and distinct:
            key = tuple(w.casefold() for w in words(_MARKER.sub("", ln, count=1)))
            kind = None if not key or key in seen else kind
            seen.add(key)
        kinds.append(kind)
    return kinds


def _parse_object(text: str) -> tuple[dict | None, bool]:
    """(the JSON object found, whether it was the whole answer). Code fences count as whole."""
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            return obj, True
    except ValueError:
        pass
    start = text.find("{")
    while start != -1:  # the first balanced {...} that parses
        depth = 0
        for end in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                try:
                    obj = json.loads(text[start : end + 1])
                    if isinstance(obj, dict):
                        return obj, False
                except ValueError:
                    pass
                break
        start = text.find("{", start + 1)
    return None, False


def _filled(value: Any) -> bool:
    """A JSON value that says something: not null, not an empty or blank string, not ``[]`` or ``{}``."""
    if isinstance(value, str):
        return bool(value.strip())
    return value is not None and value != [] and value != {}


@register_family
class JsonObject(TaskFamily):
    """ "Give a JSON object describing <entity> with the keys a, b, c. Reply with JSON only." (three of the
    entity's candidate keys in a drawn order, one of :data:`~preflab.feedback.tasks.vocab.JSON_TEMPLATES`' phrasings)

    Gold score: if a JSON object parses, 0.2 (found inside other text) or 0.4 (the whole answer, code
    fences allowed) plus 0.6 × the fraction of required keys in it; if nothing parses, 0.2 × the fraction
    of required keys written as quoted strings (an attempt that is not valid JSON). 0 if empty. New tasks set
    ``filled_values``: a key counts only with a value (not null, an empty or blank string, ``[]`` or ``{}``),
    so the keys with empty values earn the format credit alone.
    """

    name = "json_object"
    description = "a JSON object with the required keys, and only JSON"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        entity = rng.choice(sorted(ENTITIES))
        keys = rng.sample(ENTITIES[entity], 3)
        listed = ", ".join(f'"{k}"' for k in keys)
        prompt = rng.choice(JSON_TEMPLATES).format(entity=entity, keys=listed)
        return prompt, {"keys": keys, "filled_values": True}

    def score(self, params: dict[str, Any], response: str) -> float:
        keys = list(params["keys"])
        obj, whole = _parse_object(response)
        if obj is None:
            quoted = sum(1 for k in keys if f'"{k}"' in response)
            return 0.2 * quoted / max(1, len(keys))
        filled = params.get("filled_values")
        present = sum(1 for k in keys if k in obj and (not filled or _filled(obj[k])))
        return (0.4 if whole else 0.2) + 0.6 * present / max(1, len(keys))


@register_family
class Uppercase(TaskFamily):
    """ "Answer in ALL CAPITAL LETTERS: <question>"

    Gold score: the fraction of cased letters (letters with an upper/lower distinction) that are
    uppercase; 0 for an answer without cased letters (empty, digits only, or uncased scripts such as CJK).
    """

    name = "uppercase"
    description = "answer in capitals; score = fraction of letters uppercase"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        question = rng.choice(QUESTIONS)
        prompt = f"{question} Write your whole answer in CAPITAL LETTERS ONLY, LIKE THIS."
        return prompt, {}

    def score(self, params: dict[str, Any], response: str) -> float:
        letters = cased_letters(response)
        if not letters:
            return 0.0
        return sum(1 for c in letters if c.isupper()) / len(letters)
