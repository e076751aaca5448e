"""Small arithmetic: two-number sums, differences and products with a known answer."""

from __future__ import annotations

import random
from typing import Any

from .base import TaskFamily, register_family
from .text import numbers

_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
_WORDS = {"+": "plus", "-": "minus", "*": "times"}


@register_family
class Arithmetic(TaskFamily):
    """ "What is a <op> b?" with two-digit (sums, differences) or one-by-two-digit (products) numbers.

    Gold score, with p the *last* number in the answer (answers usually restate the question first):
    1 if p equals the answer; otherwise 0.5 · max(0, 1 − |p − answer| / max(|answer|, 10)) (near misses
    earn a little); 0 if the answer has no number.
    """

    name = "arithmetic"
    description = "small arithmetic; exact = 1, near misses partial"

    def build(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        op = rng.choice(sorted(_OPS))
        if op == "*":
            a, b = rng.randint(2, 9), rng.randint(11, 30)
        else:
            a, b = rng.randint(10, 99), rng.randint(10, 99)
            if op == "-" and b > a:
                a, b = b, a
        prompt = f"What is {a} {_WORDS[op]} {b}? Give the final answer as a number."
        return prompt, {"a": a, "b": b, "op": op, "answer": _OPS[op](a, b)}

    def score(self, params: dict[str, Any], response: str) -> float:
        found = numbers(response)
        if not found:
            return 0.0
        answer, pred = float(params["answer"]), found[-1]
        if pred == answer:
            return 1.0
        return 0.5 * max(0.0, 1.0 - abs(pred - answer) / max(abs(answer), 10.0))
