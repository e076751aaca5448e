"""Each row layout and each source type, on files the tests write; exact records asserted."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from preflab.data import (
    PreferencePair,
    Ranking,
    Unpaired,
    detect_format,
    load_preferences,
    split_transcripts,
    transcript_to_messages,
)
from preflab.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def U(text):
    return [{"role": "user", "content": text}]


def A(text):
    return [{"role": "assistant", "content": text}]


# ------------------------------------------------------------------ TRL preference


def test_standard_preference_keeps_optional_fields_and_extra_columns(tmp_path):
    rows = [
        {
            "prompt": "2+2?",
            "chosen": "4",
            "rejected": "5",
            "id": "a",
            "weight": 0.5,
            "preference_prob": 0.8,
            "annotator": "ann1",
            "group": "g",
            "source": "math",
        },
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon", "id": 7},
    ]
    res = load_preferences(write_jsonl(tmp_path / "p.jsonl", rows))
    assert res.format == "preference" and res.kind == "pairs" and res.n_rows == 2
    assert res.records == [
        PreferencePair(
            "2+2?",
            "4",
            "5",
            id="a",
            weight=0.5,
            preference_prob=0.8,
            annotator="ann1",
            group="g",
            metadata={"source": "math"},
        ),
        PreferencePair("Capital of France?", "Paris", "Lyon", id="7"),
    ]
    assert not res.skipped and not res.findings


def test_conversational_preference(tmp_path):
    rows = [{"prompt": U("hi"), "chosen": A("hello"), "rejected": A("go away")}]
    res = load_preferences(write_jsonl(tmp_path / "c.jsonl", rows))
    assert res.records == [PreferencePair(U("hi"), A("hello"), A("go away"))]


def test_prompt_repeated_in_message_responses_is_removed(tmp_path):
    # the ultrafeedback_binarized layout: a string prompt and chosen/rejected holding the whole chat
    rows = [{"prompt": "hi", "chosen": U("hi") + A("hello"), "rejected": U("hi") + A("no")}]
    res = load_preferences(write_jsonl(tmp_path / "u.jsonl", rows))
    assert res.records == [PreferencePair(U("hi"), A("hello"), A("no"))]
    assert res.counts["prompt repeated in responses removed"] == 1
    assert "1 row(s): prompt repeated in responses removed" in res.findings


# ------------------------------------------------------------------ implicit prompt (HH-RLHF)


def test_hh_implicit_prompt_is_cut_after_the_last_assistant_marker(tmp_path):
    base = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit."
    rows = [{"chosen": base + "\n\nAssistant: An apple.", "rejected": base + "\n\nAssistant: An axe."}]
    res = load_preferences(write_jsonl(tmp_path / "hh.jsonl", rows))
    assert res.format == "implicit_preference"
    # the shared "An a" stays in the responses: the prompt ends at the marker
    assert res.records == [PreferencePair(base + "\n\nAssistant:", " An apple.", " An axe.")]


def test_implicit_without_marker_cuts_at_whitespace():
    assert split_transcripts("Q: colour? A: red", "Q: colour? A: rose") == ("Q: colour? A:", " red", " rose")


def test_implicit_message_lists_share_leading_messages(tmp_path):
    rows = [{"chosen": U("a") + A("b") + U("c") + A("good"), "rejected": U("a") + A("b") + U("c") + A("bad")}]
    res = load_preferences(write_jsonl(tmp_path / "m.jsonl", rows))
    assert res.records == [PreferencePair(U("a") + A("b") + U("c"), A("good"), A("bad"))]


def test_transcript_to_messages():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant:"
    assert transcript_to_messages(text) == U("Hi there") + A("Hello!") + U("Bye")


# ------------------------------------------------------------------ unpaired / rated / ranking


def test_unpaired(tmp_path):
    rows = [
        {"prompt": "p", "completion": "good", "label": True, "weight": 2},
        {"prompt": "p", "completion": "bad", "label": 0},
    ]
    res = load_preferences(write_jsonl(tmp_path / "k.jsonl", rows))
    assert res.format == "unpaired" and res.kind == "unpaired"
    assert res.records == [Unpaired("p", "good", True, weight=2.0), Unpaired("p", "bad", False)]


def _uf_completion(model, text, overall, ratings):
    return {
        "model": model,
        "response": text,
        "overall_score": overall,
        "critique": "...",
        "annotations": {k: {"Rating": v, "Rationale": "r"} for k, v in ratings.items()},
    }


UF_ROW = {
    "source": "evol_instruct",
    "instruction": "Write a haiku.",
    "models": ["m1", "m2", "m3"],
    "completions": [
        _uf_completion("m1", "haiku one", 6.5, {"helpfulness": "4", "honesty": "5"}),
        _uf_completion("m2", "haiku two", 8.0, {"helpfulness": "2", "honesty": "N/A"}),
        _uf_completion("m3", "haiku three", 4.0, {"helpfulness": "3", "honesty": "3"}),
    ],
}


def test_ultrafeedback_to_rankings_uses_overall_score(tmp_path):
    res = load_preferences(write_jsonl(tmp_path / "uf.jsonl", [UF_ROW]))
    assert res.format == "rated" and res.kind == "rankings"
    assert res.records == [
        Ranking(
            "Write a haiku.",
            ["haiku one", "haiku two", "haiku three"],
            scores=[6.5, 8.0, 4.0],
            metadata={"source": "evol_instruct", "models": ["m1", "m2", "m3"]},
        )
    ]


def test_ultrafeedback_fine_grained_ratings_skip_na(tmp_path):
    row = json.loads(json.dumps(UF_ROW))
    for c in row["completions"]:
        del c["overall_score"]
    res = load_preferences(write_jsonl(tmp_path / "uf.jsonl", [row]), kind="pairs")
    # means of the numeric ratings: 4.5, 2.0 (N/A ignored), 3.0 -> best m1, worst m2
    assert res.records == [
        PreferencePair(
            "Write a haiku.",
            "haiku one",
            "haiku two",
            metadata={
                "source": "evol_instruct",
                "score_chosen": 4.5,
                "score_rejected": 2.0,
                "model_chosen": "m1",
                "model_rejected": "m2",
            },
        )
    ]


def test_score_key_selects_the_completion_field(tmp_path):
    row = {"prompt": "p", "completions": [{"text": "a", "score": 1, "mine": 9}, {"text": "b", "score": 2, "mine": 3}]}
    path = write_jsonl(tmp_path / "s.jsonl", [row])
    assert load_preferences(path, kind="pairs").records[0].chosen == "b"
    assert load_preferences(path, kind="pairs", score_key="mine").records[0].chosen == "a"


def test_flat_ranking_with_ranks(tmp_path):
    rows = [{"prompt": "p", "responses": ["x", "y", "z"], "ranks": [2, 1, 3], "id": "r1"}]
    res = load_preferences(write_jsonl(tmp_path / "r.jsonl", rows), kind="pairs", rule="adjacent")
    assert res.format == "ranking"
    assert [(p.chosen, p.rejected, p.id) for p in res.records] == [("y", "x", "r1:1>0"), ("x", "z", "r1:0>2")]
    assert res.records[0].metadata == {"rank_chosen": 1, "rank_rejected": 2}


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"prompt": "p", "chosen": "a", "rejected": "b"}, "preference"),
        ({"chosen": "a", "rejected": "b"}, "implicit_preference"),
        ({"prompt": "p", "completion": "a", "label": True}, "unpaired"),
        ({"instruction": "p", "completions": [{"response": "a", "overall_score": 1}]}, "rated"),
        ({"prompt": "p", "responses": ["a", "b"], "scores": [1, 2]}, "ranking"),
        ({"prompt": "p", "completions": ["a", "b"], "ratings": [1, 2]}, "ranking"),
        ({"prompt": "p", "text": "a"}, None),
    ],
)
def test_detect_format(row, fmt):
    assert detect_format(row) == fmt


def test_undetectable_format_names_the_columns(tmp_path):
    with pytest.raises(DataError, match=r"cannot tell the format from the columns \['question', 'text'\]"):
        load_preferences(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "text": "t"}]))


def test_forced_format_reports_missing_field(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError) as err:
        load_preferences(path, format="preference")
    assert (err.value.line, err.value.field) == (1, "prompt")


# ------------------------------------------------------------------ sources

PAIRS = [{"prompt": "p1", "chosen": "a", "rejected": "b"}, {"prompt": "p2", "chosen": "c", "rejected": "d"}]
EXPECTED = [PreferencePair("p1", "a", "b"), PreferencePair("p2", "c", "d")]


def test_json_list_and_columns(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps(PAIRS))
    (tmp_path / "d.json").write_text(json.dumps({"data": PAIRS}))
    cols = {k: [r[k] for r in PAIRS] for k in PAIRS[0]}
    (tmp_path / "c.json").write_text(json.dumps(cols))
    (tmp_path / "s.json").write_text(json.dumps({"train": PAIRS, "test": PAIRS[:1]}))
    for name in ("l.json", "d.json", "c.json", "s.json"):
        assert load_preferences(tmp_path / name).records == EXPECTED
    assert load_preferences(tmp_path / "s.json", split="test").records == EXPECTED[:1]
    with pytest.raises(DataError, match="split .dev. not found; available: train, test"):
        load_preferences(tmp_path / "s.json", split="dev")


def test_csv_parses_numbers_labels_and_message_cells(tmp_path):
    path = tmp_path / "k.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "completion", "label", "weight", "id"])
        w.writerow(["multi\nline prompt", "yes", "true", "0.5", ""])
        w.writerow([json.dumps(U("hi")), json.dumps(A("hey")), "0", "", "x"])
    res = load_preferences(path)
    assert res.records == [
        Unpaired("multi\nline prompt", "yes", True, weight=0.5),
        Unpaired(U("hi"), A("hey"), False, id="x"),
    ]


def test_parquet_and_datasets_dir(tmp_path):
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_list(PAIRS)
    ds.to_parquet(str(tmp_path / "p.parquet"))
    assert load_preferences(tmp_path / "p.parquet").records == EXPECTED
    DatasetDict({"train": ds, "test": ds.select([1])}).save_to_disk(str(tmp_path / "dd"))
    assert load_preferences(tmp_path / "dd").records == EXPECTED
    assert load_preferences(tmp_path / "dd", split="test").records == EXPECTED[1:]
    with pytest.raises(DataError, match="split 'dev' not found; available: train, test"):
        load_preferences(tmp_path / "dd", split="dev")
    assert load_preferences(ds).records == EXPECTED  # an in-memory Dataset


def test_gzip_jsonl_and_memory_rows(tmp_path):
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in PAIRS))
    assert load_preferences(tmp_path / "p.jsonl.gz").records == EXPECTED
    assert load_preferences(PAIRS).records == EXPECTED


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_preferences(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        load_preferences(tmp_path / "x.txt")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows to read"):
        load_preferences(tmp_path / "empty.jsonl")


def test_unreachable_hub_name_is_a_data_error(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network is down")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(
        DataError, match=r"some-user/some-prefs: .*hub \(huggingface.co\) is unreachable: network is down"
    ):
        load_preferences("some-user/some-prefs")


def test_json_lines_under_a_json_name_as_datasets_writes_them(tmp_path):
    from datasets import Dataset

    Dataset.from_list(PAIRS).to_json(str(tmp_path / "d.json"))  # JSON Lines by default
    res = load_preferences(tmp_path / "d.json")
    assert res.records == EXPECTED
    assert (
        repr(res)
        == f"LoadResult(2 pairs from '{tmp_path / 'd.json'}', format='preference', rows=2, skipped=0, findings=0)"
    )


def test_ultrafeedback_binarized_layout(tmp_path):
    # HuggingFaceH4/ultrafeedback_binarized: chat lists that repeat the prompt, and the two scores
    row = {
        "prompt": "Name a colour.",
        "prompt_id": "abc",
        "chosen": U("Name a colour.") + A("Blue."),
        "rejected": U("Name a colour.") + A("Chair."),
        "messages": U("Name a colour.") + A("Blue."),
        "score_chosen": 9.0,
        "score_rejected": 2.0,
    }
    res = load_preferences(write_jsonl(tmp_path / "b.jsonl", [row]))
    assert res.records == [
        PreferencePair(
            U("Name a colour."),
            A("Blue."),
            A("Chair."),
            metadata={
                "prompt_id": "abc",
                "messages": U("Name a colour.") + A("Blue."),
                "score_chosen": 9.0,
                "score_rejected": 2.0,
            },
        )
    ]
