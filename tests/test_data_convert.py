"""Conversions between record kinds (hand-computed pairs) and the save/load round trip."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from preflab.data import (
    PreferencePair,
    Ranking,
    Unpaired,
    convert,
    load_preferences,
    ranking_to_pairs,
    record_to_dict,
    save_records,
)
from preflab.errors import DataError

# scores: a=3, b=1, c=3 (tie with a), d=0, e=2  ->  order a, c, e, b, d (stable: a before c)
R = Ranking("p", ["a", "b", "c", "d", "e"], scores=[3, 1, 3, 0, 2], id="r")


def _cr(pairs):
    return [(p.chosen, p.rejected) for p in pairs]


def test_best_vs_worst():
    counts = Counter()
    pairs = ranking_to_pairs(R, "best-vs-worst", counts=counts)
    assert _cr(pairs) == [("a", "d")]
    assert pairs[0].id == "r:0>3" and pairs[0].metadata == {"score_chosen": 3, "score_rejected": 0}
    assert counts == {}


def test_best_vs_worst_nested_extremes():
    # order a, c, e, b, d: k=2 -> a>d and c>b; k is capped at n // 2 = 2 disjoint pairs
    for k in (2, 3, 9):
        assert _cr(ranking_to_pairs(R, "best-vs-worst", k=k)) == [("a", "d"), ("c", "b")]
    # a tie between the i-th best and the i-th worst makes no pair and is counted
    counts = Counter()
    tie = Ranking("p", ["w", "x", "y", "z"], scores=[4, 2, 2, 1])
    assert _cr(ranking_to_pairs(tie, "best-vs-worst", counts=counts, k=2)) == [("w", "z")]
    assert counts == {"tied_pairs": 1}
    counts = Counter()
    assert (
        ranking_to_pairs(Ranking("p", ["x", "y", "z", "t"], scores=[1] * 4), "best-vs-worst", counts=counts, k=2) == []
    )
    assert counts == {"all_tied": 1, "tied_pairs": 2}
    with pytest.raises(DataError, match="only with best-vs-worst"):
        ranking_to_pairs(R, "adjacent", k=2)
    with pytest.raises(DataError, match="k must be >= 1"):
        ranking_to_pairs(R, "best-vs-worst", k=0)


def test_all_pairs_skips_ties_and_counts_them():
    counts = Counter()
    pairs = ranking_to_pairs(R, "all-pairs", counts=counts)
    # 10 pairs of 5 responses, minus the a~c tie
    assert sorted(_cr(pairs)) == sorted(
        [("a", "e"), ("a", "b"), ("a", "d"), ("c", "e"), ("c", "b"), ("c", "d"), ("e", "b"), ("e", "d"), ("b", "d")]
    )
    assert counts == {"tied_pairs": 1}


def test_adjacent_skips_the_tie():
    counts = Counter()
    assert _cr(ranking_to_pairs(R, "adjacent", counts=counts)) == [("c", "e"), ("e", "b"), ("b", "d")]
    assert counts == {"tied_pairs": 1}


def test_best_vs_random_draws_strictly_worse_and_is_seeded():
    draws = {ranking_to_pairs(R, "best-vs-random", seed=s)[0].rejected for s in range(40)}
    assert draws == {"b", "d", "e"}  # never the tied "c", never "a" itself
    assert _cr(ranking_to_pairs(R, "best-vs-random", seed=3)) == _cr(ranking_to_pairs(R, "best-vs-random", seed=3))


def test_all_tied_ranking_gives_no_pair():
    counts = Counter()
    assert ranking_to_pairs(Ranking("p", ["x", "y", "z"], scores=[1, 1, 1]), "all-pairs", counts=counts) == []
    assert counts == {"all_tied": 1, "tied_pairs": 3}


def test_pairs_to_unpaired_and_rankings():
    p = PreferencePair("q", "good", "bad", id="7", weight=2.0, preference_prob=0.9, group="g")
    assert convert([p], "unpaired") == [
        Unpaired("q", "good", True, id="7:chosen", weight=2.0, group="g", metadata={"preference_prob": 0.9}),
        Unpaired("q", "bad", False, id="7:rejected", weight=2.0, group="g", metadata={"preference_prob": 0.9}),
    ]
    assert convert([p], "rankings") == [
        Ranking("q", ["good", "bad"], ranks=[1, 2], id="7", group="g", metadata={"preference_prob": 0.9, "weight": 2.0})
    ]
    assert convert([R], "unpaired") == [
        Unpaired("p", "a", True, id="r:0>3:chosen", metadata={"score_chosen": 3, "score_rejected": 0}),
        Unpaired("p", "d", False, id="r:0>3:rejected", metadata={"score_chosen": 3, "score_rejected": 0}),
    ]
    with pytest.raises(DataError, match="unpaired feedback cannot be converted to pairs"):
        convert([Unpaired("q", "x", True)], "pairs")


def test_record_to_dict_uses_trl_names_and_omits_defaults():
    assert record_to_dict(PreferencePair("q", "a", "b")) == {"prompt": "q", "chosen": "a", "rejected": "b"}
    assert record_to_dict(Unpaired("q", "a", False, annotator="x")) == {
        "prompt": "q",
        "completion": "a",
        "label": False,
        "annotator": "x",
    }
    assert record_to_dict(Ranking("q", ["a", "b"], ranks=[2, 1])) == {
        "prompt": "q",
        "responses": ["a", "b"],
        "ranks": [2, 1],
    }


def test_save_records_round_trip_is_lossless(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    sets = [
        [
            PreferencePair(
                "q",
                "a",
                "b",
                id="1",
                weight=0.5,
                preference_prob=0.7,
                annotator="ann",
                group="g",
                metadata={"score_chosen": 8.5, "note": {"k": [1, 2]}},
            ),
            PreferencePair(msgs, [{"role": "assistant", "content": "yo"}], [{"role": "assistant", "content": "no"}]),
        ],
        [
            Unpaired("q", "a", True, id="u", weight=3.0, metadata={"x": 1}),
            Unpaired(msgs, [{"role": "assistant", "content": "x"}], False),
        ],
        [
            Ranking("q", ["a", "b", "c"], scores=[1.0, 2.5, 0.0], id="r", annotator="z"),
            Ranking("q2", ["a", "b"], ranks=[2, 1]),
        ],
    ]
    for i, records in enumerate(sets):
        path = save_records(records, tmp_path / f"{i}.jsonl")
        res = load_preferences(path)
        assert res.records == records


def test_save_records_refuses_mixed_kinds_and_nan(tmp_path):
    with pytest.raises(DataError, match="cannot mix PreferencePair and Unpaired"):
        save_records([PreferencePair("q", "a", "b"), Unpaired("q", "a", True)], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(DataError, match="non-finite"):
        save_records([Ranking("q", ["a", "b"], scores=[float("nan"), 1.0])], tmp_path / "y.jsonl")


def test_load_as_pairs_from_rated_file_counts_ties(tmp_path):
    rows = [
        {
            "prompt": "p1",
            "completions": [
                {"response": "x", "score": 1},
                {"response": "y", "score": 2},
                {"response": "z", "score": 2},
            ],
        },
        {"prompt": "p2", "completions": [{"response": "x", "score": 5}, {"response": "y", "score": 5}]},
    ]
    path = tmp_path / "uf.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = load_preferences(path, kind="pairs", rule="all-pairs")
    assert _cr(res.records) == [("y", "x"), ("z", "x")]
    assert res.counts["tied_pairs"] == 2 and res.counts["all_tied"] == 1
    assert res.findings == [
        "2 tied response pair(s) made no pair; 1 ranking(s) had all responses tied and gave no pair"
    ]
