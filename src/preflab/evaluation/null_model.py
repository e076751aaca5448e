"""Null-model check: a judge must not prefer a constant or empty answer to real answers.

Zheng et al. 2024 ("Cheating Automatic LLM Benchmarks: Null Models Achieve High Win Rates",
arXiv:2410.07137) show that a *null model* — one that returns the same irrelevant answer to every
instruction — can win often under automatic judges (especially a long, confident-sounding one). Before
trusting a judge's win rates, we pit such null answers against real answers on the evaluation prompts:
the null answer must lose. A judge under which a null answer reaches a win rate above ``threshold`` is
reported as unreliable, together with the offending null answer and its win rate (with CI).

The default null answers are the empty answer and a long, generic, confident answer that ignores the
question — the latter catches judges that simply reward length or style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .winrate import WinRate, judge_preferences, win_rate

LONG_CONSTANT_ANSWER = (
    "Thank you for your question. Here is a complete, careful and well-structured answer. "
    "First, it is important to consider every relevant aspect of the request in detail, including the "
    "context, the constraints and the goals involved. Second, a thorough response should weigh the main "
    "options, explain the trade-offs between them, and justify the final recommendation clearly. Third, "
    "practical examples and concrete next steps make the answer easier to apply. In summary, by taking "
    "all of these considerations into account, the best approach is to proceed thoughtfully, verify each "
    "step, and adapt as new information becomes available. I hope this detailed explanation is helpful, "
    "and please let me know if you would like me to elaborate on any part of it."
)

DEFAULT_NULL_ANSWERS: dict[str, str] = {"empty": "", "long_constant": LONG_CONSTANT_ANSWER}


@dataclass
class NullAnswerResult:
    """How one null answer fared against the real answers."""

    name: str
    answer: str
    win_rate: WinRate
    passed: bool  # win rate at or below the threshold

    @property
    def verdict(self) -> str:
        """``loses`` (clearly below ½), ``ties`` (not above the threshold, not clearly losing) or ``wins``."""
        if not self.passed:
            return "wins"
        upper = self.win_rate.ci_high
        clear = upper < 0.5 if upper is not None and upper == upper else self.win_rate.win_rate < 0.5
        return "loses" if clear else "ties"

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "answer": self.answer,
            "win_rate": self.win_rate.to_dict(),
            "passed": self.passed,
            "verdict": self.verdict,
        }


@dataclass
class NullModelCheck:
    """Verdict on a judge: reliable iff every null answer's win rate stays at or below ``threshold``."""

    judge: str
    threshold: float
    reliable: bool
    results: list[NullAnswerResult] = field(default_factory=list)

    @property
    def worst(self) -> NullAnswerResult | None:
        return max(self.results, key=lambda r: r.win_rate.win_rate, default=None)

    @property
    def conclusive(self) -> bool:
        """Every null answer clearly loses (its CI lies below ½)."""
        return all(r.verdict == "loses" for r in self.results)

    def message(self) -> str:
        worst = self.worst
        if worst is None:
            return f"judge '{self.judge}': no null answers were tried"
        wr = worst.win_rate
        rate = f"{100 * wr.win_rate:.1f}%"
        if not self.reliable:
            return (
                f"judge '{self.judge}' is UNRELIABLE: the null answer '{worst.name}' wins {rate} "
                f"(threshold {100 * self.threshold:.0f}%)"
            )
        if self.conclusive:
            return f"judge '{self.judge}' is reliable: every null answer loses (the best, '{worst.name}', wins {rate})"
        ties = 100 * wr.ties / max(wr.n, 1)
        return (
            f"judge '{self.judge}' passes (threshold {100 * self.threshold:.0f}%), but the null answer "
            f"'{worst.name}' does not clearly lose ({rate}, ties on {ties:.0f}% of prompts): under this "
            "judge the evaluated answers are hardly better than a constant answer"
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["results"] = [r.to_dict() for r in self.results]
        data["conclusive"] = self.conclusive
        data["message"] = self.message()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NullModelCheck:
        results = [
            NullAnswerResult(r["name"], r["answer"], WinRate.from_dict(r["win_rate"]), r["passed"])
            for r in data.get("results", [])
        ]
        return cls(data["judge"], data["threshold"], data["reliable"], results)


def null_model_check(
    judge,
    prompts: Sequence,
    answers: Sequence,
    *,
    null_answers: dict[str, str] | Sequence[str] | None = None,
    threshold: float = 0.5,
    both_orders: bool = False,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> NullModelCheck:
    """Judge each null answer against the real ``answers`` on ``prompts``; flag the judge if one wins.

    ``null_answers`` maps a name to a constant answer (a plain list is named ``null_0``, ``null_1``...);
    the default is :data:`DEFAULT_NULL_ANSWERS`. ``threshold`` is the highest null win rate (ties
    counting half) a reliable judge may give.
    """
    if null_answers is None:
        null_answers = DEFAULT_NULL_ANSWERS
    if not isinstance(null_answers, dict):
        null_answers = {f"null_{i}": a for i, a in enumerate(null_answers)}
    results = []
    for name, constant in null_answers.items():
        prefs = judge_preferences(judge, prompts, [constant] * len(prompts), answers, both_orders=both_orders)
        wr = win_rate(prefs, confidence=confidence, n_bootstrap=n_bootstrap, seed=seed)
        results.append(NullAnswerResult(name, constant, wr, wr.win_rate <= threshold))
    return NullModelCheck(
        judge=getattr(judge, "name", type(judge).__name__),
        threshold=threshold,
        reliable=all(r.passed for r in results),
        results=results,
    )
