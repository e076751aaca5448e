"""Gold scorers on crafted responses (hand-computed values), task generation by seed, the registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflab.errors import ConfigError, DataError
from preflab.feedback.tasks import FAMILIES, SUITES, get_family, get_suite, score_task, task_from_dict
from preflab.feedback.tasks.text import numbers, word_count

LONG = "word " * 10_000


def s(family: str, params: dict, response: str) -> float:
    return score_task(family, params, response)


def test_word_limit():
    p = {"max_words": 10}
    assert s("word_limit", p, "one two three") == 1.0
    assert s("word_limit", p, " ".join(["w"] * 20)) == 0.5
    assert s("word_limit", p, "") == 0.0
    assert s("word_limit", p, "   \n ") == 0.0
    assert s("word_limit", p, LONG) == pytest.approx(10 / 10_000)
    assert s("word_limit", p, "日本語 です, naïve café!") == 1.0  # 4 Unicode words


def test_min_words():
    assert s("min_words", {"min_words": 80}, " ".join(["w"] * 20)) == 0.25
    assert s("min_words", {"min_words": 80}, LONG) == 1.0
    assert s("min_words", {"min_words": 80}, "") == 0.0


def test_word_counting_and_numbers():
    # don't | stop | well-known | 3.5 | x | y  (the dash and underscore separate)
    assert word_count("don't stop — well-known, 3.5 x_y") == 6
    assert numbers("20 + 22 = 42.") == [20.0, 22.0, 42.0]
    assert numbers("It is -7, or 1,234 or 3.5") == [-7.0, 1234.0, 3.5]


def test_include_keywords():
    p = {"keywords": ["blue", "quiet", "window"]}
    assert s("include_keywords", p, "The Blue sky over quiet windows.") == 1.0
    assert s("include_keywords", p, "blue only") == pytest.approx(1 / 3)
    assert s("include_keywords", p, "bluest quietly") == 0.0
    assert s("include_keywords", p, "") == 0.0


def test_exclude_keyword():
    p = {"forbidden": "ocean"}
    assert s("exclude_keyword", p, "The sea is vast and deep and full of life everywhere.") == 1.0
    assert s("exclude_keyword", p, "The ocean is big. Oceans cover earth.") == pytest.approx(1 / 3 * 7 / 8)
    assert s("exclude_keyword", p, "") == 0.0
    assert s("exclude_keyword", p, "Blue.") == pytest.approx(1 / 8)  # too short to count as avoiding it


def test_bullet_list():
    p = {"count": 3}
    assert s("bullet_list", p, "- a\n- b\n- c") == 1.0
    assert s("bullet_list", p, "Here:\n- a\n- b\n- c\n") == pytest.approx(3 / 4)
    assert s("bullet_list", p, "1. a\n2) b\n3. c") == pytest.approx(0.4)
    assert s("bullet_list", p, "* a\n• b") == pytest.approx(1.0 * (0.5 + 0.5 * (1 - 1 / 3)))
    assert s("bullet_list", p, "- a\n2. b\nprose") == pytest.approx((1 + 0.4) / 3 * (0.5 + 0.5 * (2 / 3)))
    assert s("bullet_list", p, "") == 0.0
    assert s("bullet_list", p, "just prose, no list") == 0.0
    assert s("bullet_list", p, "\n".join(["- x"] * 9)) == pytest.approx(0.5)  # 9 bullets: count credit 0


def test_json_object():
    p = {"keys": ["name", "age", "city"]}
    assert s("json_object", p, '{"name": "Al", "age": 3, "city": "Paris"}') == pytest.approx(1.0)
    assert s("json_object", p, '```json\n{"name": "Al"}\n```') == pytest.approx(0.4 + 0.2)
    assert s("json_object", p, 'Sure! {"name": "Al", "age": 3} Enjoy.') == pytest.approx(0.2 + 0.4)
    assert s("json_object", p, '"name": Al, "age": 3') == pytest.approx(0.2 * 2 / 3)
    assert s("json_object", p, "[1, 2]") == 0.0
    assert s("json_object", p, "") == 0.0
    assert s("json_object", p, '{"名前": "太郎", "name": "Tarō"}') == pytest.approx(0.4 + 0.2)


def test_uppercase():
    assert s("uppercase", {}, "HELLO, WORLD 42!") == 1.0
    assert s("uppercase", {}, "Hello") == pytest.approx(0.2)
    assert s("uppercase", {}, "ÉCOLE été") == pytest.approx(5 / 8)
    assert s("uppercase", {}, "123 日本") == 0.0
    assert s("uppercase", {}, "") == 0.0


def test_ending_phrase():
    p = {"phrase": "Have a nice day!"}
    assert s("ending_phrase", p, "Sure, here it is. Have a nice day!") == 1.0
    assert s("ending_phrase", p, "Sure. **Have a  nice day!**\n") == 1.0
    assert s("ending_phrase", p, "Have a nice day! Bye.") == 0.5
    assert s("ending_phrase", p, "So I hope you have a nice day") == 1.0  # punctuation is not compared
    assert s("ending_phrase", p, "Have a day that is nice") == pytest.approx(0.4)  # all its words, not in order
    assert s("ending_phrase", p, "Bye, nice talking.") == pytest.approx(0.4 * 1 / 4)
    assert s("ending_phrase", p, "") == 0.0


def test_arithmetic():
    p = {"a": 20, "b": 22, "op": "+", "answer": 42}
    assert s("arithmetic", p, "20 + 22 = 42.") == 1.0
    assert s("arithmetic", p, "The answer is 40") == pytest.approx(0.5 * (1 - 2 / 42))
    assert s("arithmetic", p, "no idea") == 0.0
    assert s("arithmetic", p, "42 ... or maybe 1000") == 0.0
    assert s("arithmetic", {"answer": 3}, "It is 4") == pytest.approx(0.5 * (1 - 1 / 10))


def test_sentiment():
    pos, neg = {"target": "positive"}, {"target": "negative"}
    assert s("sentiment", pos, "I love it, it is wonderful and great!") > 0.9
    assert s("sentiment", neg, "I love it, it is wonderful and great!") < 0.1
    assert s("sentiment", neg, "Terrible, awful, broke on day one. I hate it.") > 0.9
    assert s("sentiment", pos, "It is a chair.") == 0.5
    assert s("sentiment", pos, "") == 0.0
    assert s("sentiment", pos, "🙂 !!!") == 0.0  # no words


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=300))
def test_every_family_scores_in_unit_interval(text):
    for name, fam in FAMILIES.items():
        task = fam.make(seed=1, index=0)
        value = task.score(text)
        assert 0.0 <= value <= 1.0, name


def test_tasks_are_seeded_balanced_and_prefix_stable():
    suite = get_suite("default")
    a, b = suite.tasks(24, seed=3), suite.tasks(24, seed=3)
    assert a == b
    assert suite.tasks(10, seed=3) == a[:10]
    assert [t.prompt for t in suite.tasks(24, seed=4)] != [t.prompt for t in a]
    counts = {f: sum(t.family == f for t in a) for f in suite.families}
    assert counts == {f: 24 // len(suite.families) for f in suite.families}
    assert len({t.id for t in a}) == 24


def test_task_roundtrip_and_errors():
    task = get_suite("arithmetic").tasks(1, seed=0)[0]
    assert task_from_dict(task.to_dict()) == task
    assert task.score(str(task.params["answer"])) == 1.0
    with pytest.raises(DataError, match="line 7.*task.family"):
        task_from_dict({"family": "nope", "prompt": "x"}, file="f.jsonl", line=7)
    with pytest.raises(ConfigError, match="unknown task suite"):
        get_suite("nope")
    with pytest.raises(ConfigError):
        get_family("nope")


def test_registry():
    assert "default" in SUITES and "all" in SUITES
    assert set(SUITES["all"].families) == set(FAMILIES)
    assert all(f in FAMILIES for f in SUITES["default"].families)


def test_ending_phrase_ignores_case_punctuation_and_markdown():
    p = {"phrase": "I hope this helps."}
    assert s("ending_phrase", p, "Bread needs time. I hope this helps!") == 1.0
    assert s("ending_phrase", p, "Bread needs time. *i HOPE this helps*") == 1.0
    assert s("ending_phrase", p, "I hope this helps. More text.") == 0.5
    assert s("ending_phrase", {"phrase": "That is all."}, "Bread. That’s all.") == pytest.approx(
        0.4 / 3
    )  # that's ≠ that


DEGENERATE = {
    "empty": lambda t: "",
    "constant": lambda t: "ok",
    "generic": lambda t: "Sure! Here is a clear and helpful answer to your question.",
    "echo": lambda t: t.prompt,
}


@pytest.mark.parametrize("family", SUITES["default"].families)
def test_default_families_have_100_distinct_prompts_and_no_degenerate_credit(family):
    tasks = get_suite(family).tasks(100, seed=0)
    assert len({t.prompt for t in tasks}) == 100
    for name, answer in DEGENERATE.items():
        assert max(t.score(answer(t)) for t in tasks) == 0.0, name


def test_echo_and_topic_guards():
    from preflab.feedback.tasks.text import echoes, mentions

    prompt = "Describe the ocean. Answer in at most 8 words."
    assert echoes(prompt, prompt) and echoes("Describe the ocean please", prompt)  # 1 of 2 trigrams copied
    assert not echoes("The ocean is vast and deep.", prompt) and not echoes("42", "What is 40 plus 2? 42")
    assert mentions("Oceans and the seas", ["ocean", "sea", "fish"]) == 2
    assert mentions("Libraries lend books", ["library", "book"]) == 2 and mentions("raincoat", ["rain"]) == 0
    task = get_family("word_limit").make(0, 0)
    topic = task.params["topic_words"][0]
    assert task.score(f"I like {topic} a lot.") == 1.0  # on topic, 5 words within every limit (>= 8)
    assert task.score("I like turtles a lot.") == 0.0
    assert s("word_limit", {"max_words": 4, "topic_words": ["sea"]}, "the sea is big and blue") == pytest.approx(4 / 6)
    assert (
        s(
            "exclude_keyword",
            {"forbidden": "ocean", "topic_words": ["sea"]},
            "It is wide and blue and it never ends at all.",
        )
        == 0.0
    )
    assert s(
        "include_keywords", {"keywords": ["blue", "quiet", "window"], "min_words": 8}, "blue quiet window"
    ) == pytest.approx(3 / 8)
    pos = {"target": "positive", "credit": "signed", "product_words": ["laptop"]}
    assert s("sentiment", pos, "This laptop is a laptop.") == 0.0  # neutral: no credit
    assert s("sentiment", pos, "I love it, it is wonderful!") == 0.0  # never names the laptop
    assert s("sentiment", {**pos, "target": "negative"}, "This laptop is wonderful, I love it!") == 0.0
    assert s("sentiment", pos, "This laptop is wonderful, I love it!") > 0.8


def test_bare_repeated_and_empty_answers_earn_little():
    """The rules new tasks carry against answers trained policies found: the bare topic word for word_limit, the
    phrase alone for ending_phrase, one item listed k times, keys with empty values, one word looped to a length."""
    wl = {"max_words": 10, "topic_words": ["ocean", "sea"], "min_words": 4}
    assert s("word_limit", wl, "ocean") == pytest.approx(0.25)
    assert s("word_limit", wl, "Oceans: deep, salty.") == pytest.approx(0.75)  # 3 distinct words
    assert s("word_limit", wl, "The ocean is deep.") == 1.0
    assert s("word_limit", wl, "Ocean sea ocean sea ocean sea ocean sea") == pytest.approx(0.5)
    assert s("word_limit", wl, " ".join(["sea"] * 20)) == pytest.approx(0.25 * 10 / 20)
    end = {"phrase": "The end.", "topic_words": ["ocean"], "min_words": 3}
    assert s("ending_phrase", end, "The end.") == 0.0
    assert s("ending_phrase", end, "The ocean is deep. The end.") == 1.0
    assert s("ending_phrase", end, "Oceans! The end!") == pytest.approx(1 / 3)
    assert s("ending_phrase", end, "Computers are fast. The end.") == 0.0  # off topic
    assert s("ending_phrase", end, "The end of the ocean is far.") == pytest.approx(0.5 * 1.0)  # 4 own words
    bl = {"count": 3, "distinct_items": True}
    assert s("bullet_list", bl, "- a\n- b\n- c") == 1.0
    assert s("bullet_list", bl, "- Bird\n- bird!\n- BIRD") == pytest.approx(1 / 3 * (0.5 + 0.5 / 3))
    assert s("bullet_list", bl, "- ***\n- [-]\n1. a") == pytest.approx(0.4 / 3 * (0.5 + 0.5 / 3))
    assert s("bullet_list", bl, "- Dog\n- Fish\n- Bird\n- Fish") == pytest.approx(3 / 4)
    assert s("bullet_list", {"count": 3}, "- Bird\n- Bird\n- Bird") == 1.0  # tasks written before the rule
    js = {"keys": ["name", "age", "city"], "filled_values": True}
    assert s("json_object", js, '{"name": "", "age": null, "city": "  "}') == pytest.approx(0.4)
    assert s("json_object", js, '{"name": "Al", "age": 0, "city": []}') == pytest.approx(0.4 + 0.6 * 2 / 3)
    inc = {"keywords": ["blue", "quiet", "window"], "min_words": 8}
    looped = "blue quiet window blue quiet window blue quiet"
    assert s("include_keywords", {**inc, "distinct_words": True}, looped) == pytest.approx(3 / 8)
    assert s("include_keywords", inc, looped) == 1.0  # tasks written before the rule re-score as they did
    exc = {"forbidden": "ocean", "topic_words": ["sea"], "distinct_words": True}
    assert s("exclude_keyword", exc, "sea " * 8) == pytest.approx(1 / 8)


def _topic_word(task) -> str:
    return (task.params.get("topic_words") or ["ok"])[0]


SHORT_OR_LOOPED = {
    "topic word": _topic_word,
    "topic word looped": lambda t: " ".join([_topic_word(t)] * 12),
    "phrase alone": lambda t: t.params.get("phrase", "ok"),
    "one item k times": lambda t: "\n".join([f"- {_topic_word(t)}"] * int(t.params.get("count", 3))),
}


@pytest.mark.parametrize("family", SUITES["default"].families)
def test_default_families_give_bare_or_looped_answers_at_most_a_quarter(family):
    tasks = get_suite(family).tasks(100, seed=0)
    for name, answer in SHORT_OR_LOOPED.items():
        assert max(t.score(answer(t)) for t in tasks) <= 0.25, name
