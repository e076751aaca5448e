"""Null-model check, per-group results, gold per family, ranking accuracy, with stub judges."""

from dataclasses import dataclass

import numpy as np
import pytest

from preflab.errors import DataError
from preflab.evaluation import (
    gold_by_family,
    judge_preferences,
    null_model_check,
    per_group_results,
    ranking_accuracy,
)
from preflab.evaluation.null_model import LONG_CONSTANT_ANSWER
from preflab.evaluation.policies import evaluate_answers
from preflab.feedback import Judge


class LongerIsBetter(Judge):
    """A length-biased judge: the longer answer wins."""

    name = "longer-is-better"

    def compare(self, prompt, a, b):
        return 1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5


@dataclass
class Task:
    prompt: str
    family: str
    keyword: str

    def score(self, response: str) -> float:
        return 1.0 if self.keyword in response else 0.0


class KeywordJudge(Judge):
    """Gold judge on tasks: an answer containing the task's keyword scores 1."""

    name = "keyword"

    def score(self, prompt, response):
        return prompt.score(response)

    def compare(self, prompt, a, b):
        d = self.score(prompt, a) - self.score(prompt, b)
        return 0.5 + 0.5 * np.sign(d)


class FirstSlotJudge(Judge):
    """Position-biased: P(first ≻ second) = 0.8 whatever the answers."""

    def compare(self, prompt, a, b):
        return 0.8


TASKS = [
    Task(f"Say the word {w}.", fam, w)
    for fam, words in (("animals", ["zebra", "yak", "gnu", "okapi"]), ("colours", ["teal", "mauve", "ochre", "cyan"]))
    for w in words
]
GOOD = [f"Sure: {t.keyword}." for t in TASKS]


def test_null_model_check_catches_a_length_biased_judge():
    check = null_model_check(LongerIsBetter(), TASKS, GOOD, n_bootstrap=200)
    by_name = {r.name: r for r in check.results}
    assert by_name["long_constant"].win_rate.win_rate == 1.0  # the long constant answer beats every real answer
    assert by_name["empty"].win_rate.win_rate == 0.0
    assert not by_name["long_constant"].passed and by_name["empty"].passed
    assert not check.reliable
    assert check.worst.name == "long_constant"
    assert "UNRELIABLE" in check.message()
    assert len(LONG_CONSTANT_ANSWER) > 5 * max(len(a) for a in GOOD)


def test_null_model_check_passes_a_sound_judge_and_honours_the_threshold():
    check = null_model_check(KeywordJudge(), TASKS, GOOD, n_bootstrap=200)
    assert check.reliable
    assert [r.win_rate.win_rate for r in check.results] == [0.0, 0.0]
    # half of the real answers are empty-equivalent (no keyword): the empty answer ties those
    half_bad = GOOD[:4] + ["no idea"] * 4
    check = null_model_check(KeywordJudge(), TASKS, half_bad, null_answers=[""], threshold=0.2, n_bootstrap=0)
    assert check.results[0].win_rate.win_rate == pytest.approx(0.25)  # 4 ties of 8 count half
    assert not check.reliable


def test_both_orders_cancels_position_bias():
    a, b = ["x"] * 3, ["y"] * 3
    assert judge_preferences(FirstSlotJudge(), ["p"] * 3, a, b).tolist() == [0.8] * 3
    assert judge_preferences(FirstSlotJudge(), ["p"] * 3, a, b, both_orders=True).tolist() == [0.5] * 3


def test_judge_verdict_out_of_range_is_a_data_error():
    class Broken(Judge):
        name = "broken"

        def compare(self, prompt, a, b):
            return 2.0

    with pytest.raises(DataError, match=r"row 0.*judge 'broken'"):
        judge_preferences(Broken(), ["p"], ["a"], ["b"])


def test_per_group_win_rates_and_worst_group():
    # the "concise" group prefers shorter answers, the "detailed" group longer ones; A is always longer
    prefs = {"detailed": [1.0] * 10, "concise": [0.0] * 8 + [0.5] * 2}
    gold_a = {"detailed": [0.9] * 10, "concise": [0.2] * 10}
    gold_b = {"detailed": [0.4] * 10, "concise": [0.6] * 10}
    res = per_group_results(prefs, gold_a=gold_a, gold_b=gold_b, n_bootstrap=100)
    by = {g.group: g for g in res.groups}
    assert by["concise"].win_rate.win_rate == pytest.approx(0.1)
    assert by["detailed"].win_rate.win_rate == 1.0
    assert res.worst_by_win_rate == "concise" and res.worst_by_gold == "concise"
    assert res.win_rate_spread == pytest.approx(0.9)
    assert by["concise"].gold_gain == pytest.approx(-0.4)
    assert res.to_dict()["groups"][0]["gold_gain"] == pytest.approx(0.5)


def test_per_group_from_flat_labels():
    res = per_group_results([1, 1, 0, 0, 1], groups=["a", "a", "b", "b", "b"], n_bootstrap=0)
    assert {g.group: g.win_rate.win_rate for g in res.groups} == pytest.approx({"a": 1.0, "b": 1 / 3})
    assert res.worst_by_win_rate == "b"
    with pytest.raises(DataError, match="group labels"):
        per_group_results([1, 0], groups=["a"])


def test_gold_by_family_paired_gain():
    a = [1.0, 0.5, 0.0, 1.0]
    b = [0.0, 0.5, 1.0, 0.0]
    fams = ["x", "x", "y", "y"]
    rows = {r.family: r for r in gold_by_family(a, b, fams, preferences=[1, 0.5, 0, 1], n_bootstrap=200)}
    assert list(rows) == ["x", "y", "all"]
    assert rows["x"].a.value == 0.75 and rows["x"].b.value == 0.25 and rows["x"].gain.value == 0.5
    assert rows["y"].gain.value == 0.0
    assert rows["all"].gain.value == pytest.approx(0.25) and rows["all"].a.n == 4
    assert rows["x"].win_rate.win_rate == 0.75


def test_ranking_accuracy_by_hand():
    pc, pr = [-10, -5, -7, -3], [-12, -4, -7, -8]
    rc, rr = [-11, -3, -6, -2], [-11, -6, -8, -9]
    margin = [1.0, -2.0, 0.2, -0.1]
    res = ranking_accuracy(
        pc, pr, rc, rr, beta=0.5, chosen_len=[2, 5, 7, 1], rejected_len=[4, 2, 7, 4], true_margin=margin
    )
    assert res.policy_logprob.value == pytest.approx(0.625)  # margins 2, -1, 0 (tie), 5
    assert res.implicit_reward.value == pytest.approx(0.25)  # 2, -4, -2, -2
    assert res.reference_logprob.value == pytest.approx(0.875)  # 0 (tie), 3, 2, 7
    assert res.policy_logprob_normalised.value == pytest.approx(0.375)  # -2, 1, 0, -1
    assert res.idealised_logprob.value == pytest.approx(0.75)  # 0+2, 3-4, 2+0.4, 7-0.2
    assert res.idealised_implicit_reward.value == pytest.approx(0.5)
    assert res.per_pair["policy_logprob"] == [1.0, 0.0, 0.5, 1.0]
    # the true preference probability gives the same idealised accuracy as its logit margin
    probs = 1 / (1 + np.exp(-np.array(margin)))
    again = ranking_accuracy(pc, pr, rc, rr, beta=0.5, true_prob=probs)
    assert again.idealised_logprob.value == pytest.approx(0.75)
    assert len(res.rows()) == 6


def test_evaluate_answers_end_to_end_with_stub_judges():
    answers_a = GOOD[:6] + ["hmm", "no"]
    answers_b = ["nothing"] * 4 + GOOD[4:]
    res = evaluate_answers(
        TASKS,
        answers_a,
        answers_b,
        KeywordJudge(),
        group_judges={"keyword": KeywordJudge(), "verbose": LongerIsBetter()},
        n_bootstrap=200,
        lc_bootstrap=20,
    )
    # A wins the 4 animals, ties colours 5-6, loses 7-8
    assert res.win_rate.win_rate == pytest.approx((4 + 1) / 8)
    assert res.null_check.reliable
    fams = {g.family: g for g in res.gold}
    assert fams["animals"].gain.value == 1.0 and fams["colours"].gain.value == -0.5
    assert {g.group for g in res.groups.groups} == {"keyword", "verbose"}
    assert res.samples[0]["prompt"] == "Say the word zebra." and res.samples[0]["family"] == "animals"
    assert res.lc_win_rate is not None and res.judge == "keyword"
    with pytest.raises(DataError, match="answers"):
        evaluate_answers(TASKS, answers_a[:3], answers_b, KeywordJudge())


def test_null_answer_that_only_ties_is_flagged_as_inconclusive():
    class Indifferent(Judge):
        name = "indifferent"

        def compare(self, prompt, a, b):
            return 0.5

    check = null_model_check(Indifferent(), TASKS, GOOD, n_bootstrap=100)
    assert check.reliable  # 50% does not exceed the 50% threshold...
    assert not check.conclusive  # ...but no null answer clearly loses
    assert [r.verdict for r in check.results] == ["ties", "ties"]
    assert "does not clearly lose" in check.message() and "ties on 100% of prompts" in check.message()
    sound = null_model_check(KeywordJudge(), TASKS, GOOD, n_bootstrap=100)
    assert sound.conclusive and [r.verdict for r in sound.results] == ["loses", "loses"]
    assert [r.verdict for r in null_model_check(LongerIsBetter(), TASKS, GOOD, n_bootstrap=0).results] == [
        "loses",
        "wins",
    ]
