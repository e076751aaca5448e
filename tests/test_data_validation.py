"""Bad rows: each reason raises a DataError naming file, line/row and field; ``skip`` keeps every good row."""

from __future__ import annotations

import json

import pytest

from preflab.data import PreferencePair, load_preferences
from preflab.errors import DataError

GOOD = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(5)]
GOOD_RECORDS = [PreferencePair(f"p{i}", f"c{i}", f"r{i}") for i in range(5)]


def write_lines(path, lines):
    """``lines``: dicts (dumped as JSON) or raw str/bytes lines."""
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line)
        out += (line.encode() if isinstance(line, str) else line) + b"\n"
    path.write_bytes(out)
    return path


BAD_ROWS = [
    # (bad line, reason, field)
    ('{"prompt": "p", "chosen": "a", ', "malformed_json", None),
    (b'{"prompt": "p\xff\xfe", "chosen": "a", "rejected": "b"}', "undecodable_bytes", None),
    ('["prompt", "chosen"]', "not_an_object", None),
    ({"prompt": "p", "chosen": "a"}, "missing_field", "rejected"),
    ({"prompt": "p", "chosen": None, "rejected": "b"}, "missing_field", "chosen"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "wrong_type", "chosen"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "empty_string", "prompt"),
    ({"prompt": "p", "chosen": "  ", "rejected": "b"}, "empty_string", "chosen"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "identical_responses", "rejected"),
    (
        {"prompt": "p", "chosen": "a", "rejected": "b", "preference_prob": 1.5},
        "probability_out_of_range",
        "preference_prob",
    ),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "preference_prob": "0.5"}, "wrong_type", "preference_prob"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "weight": NaN}', "non_finite_number", "weight"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "weight": -1}, "negative_weight", "weight"),
    ('{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": NaN}', "non_finite_number", "score_chosen"),
    ({"prompt": "p", "chosen": [{"role": "assistant"}], "rejected": "b"}, "bad_message", "chosen"),
    ({"prompt": "p", "chosen": [{"role": "assistant", "content": "x"}], "rejected": "b"}, "wrong_type", "rejected"),
]


@pytest.mark.parametrize(("bad", "reason", "field"), BAD_ROWS)
def test_broken_line_in_the_middle_fails_naming_it_and_skip_keeps_every_good_row(tmp_path, bad, reason, field):
    path = write_lines(tmp_path / "d.jsonl", GOOD[:3] + [bad] + GOOD[3:])
    with pytest.raises(DataError) as err:
        load_preferences(path)
    e = err.value
    assert (e.file, e.line, e.field) == (str(path), 4, field)
    assert f"[{reason}]" in str(e) and str(e).startswith(f"{path}, line 4")

    report = tmp_path / "skipped.jsonl"
    res = load_preferences(path, on_bad_row="skip", report_path=report)
    assert res.records == GOOD_RECORDS
    assert res.n_rows == 6 and res.skipped == {reason: 1}
    assert len(res.findings) == 1 and res.findings[0].startswith(f"{path}, line 4")
    entries = [json.loads(x) for x in report.read_text().splitlines()]
    assert len(entries) == 1
    assert {k: entries[0][k] for k in ("file", "line", "reason", "field")} == {
        "file": str(path),
        "line": 4,
        "reason": reason,
        "field": field,
    }
    assert entries[0]["raw"] is not None


def test_nan_score_in_rated_completions_names_the_completion(tmp_path):
    rows = [{"prompt": "p", "completions": [{"response": "a", "score": 1}, {"response": "b", "score": float("nan")}]}]
    path = tmp_path / "uf.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")  # json.dumps writes NaN
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.line, err.value.field) == (1, "completions[1].score")
    assert "non_finite_number" in str(err.value)


def test_duplicate_ids_name_both_lines(tmp_path):
    rows = [dict(GOOD[0], id="x"), dict(GOOD[1], id="y"), dict(GOOD[2], id="x")]
    path = write_lines(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=r"line 3, field 'id': id 'x' was already used at line 1 \[duplicate_id\]"):
        load_preferences(path)
    res = load_preferences(path, on_bad_row="skip")
    assert [r.id for r in res.records] == ["x", "y"] and res.skipped == {"duplicate_id": 1}


def test_max_chars_counts_prompt_plus_response(tmp_path):
    rows = [{"prompt": "12345", "chosen": "abc", "rejected": "abcdef"}, {"prompt": "1", "chosen": "a", "rejected": "b"}]
    path = write_lines(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_preferences(path, max_chars=10)
    assert err.value.field == "rejected" and "prompt + rejected has 11 characters" in str(err.value)
    assert len(load_preferences(path, max_chars=11).records) == 2
    res = load_preferences(path, max_chars=10, on_bad_row="skip")
    assert res.records == [PreferencePair("1", "a", "b")] and res.skipped == {"too_long": 1}


def test_non_line_sources_report_row_index(tmp_path):
    rows = GOOD[:2] + [{"prompt": "p", "chosen": "a", "rejected": "a"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    with pytest.raises(DataError) as err:
        load_preferences(tmp_path / "d.json")
    assert (err.value.line, err.value.row, err.value.field) == (None, 2, "rejected")


def test_invalid_json_document_names_its_line(tmp_path):
    (tmp_path / "d.json").write_text('[\n{"prompt": "p",\n "chosen": }\n]')
    with pytest.raises(DataError) as err:
        load_preferences(tmp_path / "d.json")
    assert err.value.line == 3


def test_csv_bad_bytes_and_ragged_rows_name_their_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b'prompt,chosen,rejected\np0,c0,r0\n"p\n1",c\xff1,r1\np2,c2,r2,extra\n\np3,c3,"r\r\n3"\nx,"",y\n')
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.line, err.value.field) == (3, "chosen") and "undecodable_bytes" in str(err.value)
    res = load_preferences(path, on_bad_row="skip")
    assert res.records == [PreferencePair("p0", "c0", "r0"), PreferencePair("p3", "c3", "r\r\n3")]
    assert [(b["line"], b["field"]) for b in res.bad_rows] == [(3, "chosen"), (5, None), (9, "chosen")]
    assert res.bad_rows[0]["raw"]["chosen"] == "c\\xff1"


def test_bad_arguments_are_data_errors(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", GOOD)
    for kwargs, msg in [
        ({"format": "trl"}, "unknown format 'trl'"),
        ({"on_bad_row": "ignore"}, "on_bad_row"),
        ({"rule": "best"}, "unknown pairing rule"),
        ({"kind": "triples"}, "unknown kind"),
    ]:
        with pytest.raises(DataError, match=msg):
            load_preferences(path, **kwargs)


def test_all_rows_bad_is_reported_not_silent(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "a"}, "{oops"])
    res = load_preferences(path, on_bad_row="skip")
    assert res.records == [] and res.n_rows == 2
    assert res.findings[-1] == "no usable rows: all 2 rows were skipped"


def test_a_bad_first_row_does_not_hide_the_format(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ["{broken", {"prompt": "p", "chosen": "a"}] + GOOD)
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert err.value.line == 1 and "malformed_json" in str(err.value)
    res = load_preferences(path, on_bad_row="skip")
    assert res.format == "preference" and res.records == GOOD_RECORDS
    assert [(b["line"], b["reason"], b["field"]) for b in res.bad_rows] == [
        (1, "malformed_json", None),
        (2, "missing_field", "rejected"),
    ]
    unreadable = write_lines(tmp_path / "u.jsonl", ["{", "[1]"])
    with pytest.raises(DataError, match="none of the first 2 rows could be read"):
        load_preferences(unreadable, on_bad_row="skip")
