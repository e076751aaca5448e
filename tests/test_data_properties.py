"""Property tests: parsing round trips for any text, and bad rows found wherever they are."""

from __future__ import annotations

import csv
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from preflab.data import PreferencePair, Ranking, Unpaired, load_preferences, save_records, split_transcripts
from preflab.data.fields import BadRow
from preflab.errors import DataError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

text = st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != "")
user_msgs = st.lists(text.map(lambda t: {"role": "user", "content": t}), min_size=1, max_size=3)
asst_msgs = st.lists(text.map(lambda t: {"role": "assistant", "content": t}), min_size=1, max_size=2)
prob = st.none() | st.floats(0, 1)
weight = st.floats(0, 100, allow_nan=False)
opt_str = st.none() | st.text(min_size=1, max_size=8).filter(lambda s: s.strip() != "")
meta = st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5), max_size=3)


@st.composite
def pairs(draw):
    conv = draw(st.booleans())
    prompt = draw(user_msgs if conv else text)
    chosen = draw(asst_msgs if conv else text)
    rejected = draw((asst_msgs if conv else text).filter(lambda r: r != chosen))
    return PreferencePair(
        prompt,
        chosen,
        rejected,
        id=None,
        weight=draw(weight),
        preference_prob=draw(prob),
        annotator=draw(opt_str),
        group=draw(opt_str),
        metadata=draw(meta),
    )


@st.composite
def rankings(draw):
    n = draw(st.integers(2, 5))
    responses = draw(st.lists(text, min_size=n, max_size=n))
    if draw(st.booleans()):
        return Ranking(draw(text), responses, scores=draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)))
    return Ranking(draw(text), responses, ranks=draw(st.permutations(list(range(1, n + 1)))), annotator=draw(opt_str))


unpaired = st.builds(lambda p, c, lab, w: Unpaired(p, c, lab, weight=w), text, text, st.booleans(), weight)


def _with_ids(records):
    for i, r in enumerate(records):
        r.id = f"id-{i}"
    return records


@SETTINGS
@given(
    st.lists(pairs(), min_size=1, max_size=6)
    | st.lists(rankings(), min_size=1, max_size=4)
    | st.lists(unpaired, min_size=1, max_size=4),
    st.booleans(),
)
def test_save_then_load_returns_the_same_records(tmp_path, records, ids):
    if ids:
        records = _with_ids(records)
    path = save_records(records, tmp_path / "r.jsonl")
    assert load_preferences(path).records == records


@SETTINGS
@given(st.lists(st.tuples(text, text, text), min_size=1, max_size=5))
def test_csv_cells_with_quotes_commas_and_newlines_parse_back(tmp_path, triples):
    assume(all(c != r for _, c, r in triples))
    assume(all(not s.strip().startswith(("[", "{")) for t in triples for s in t))
    path = tmp_path / "d.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "chosen", "rejected"])
        w.writerows(triples)
    assert load_preferences(path).records == [PreferencePair(*t) for t in triples]


@given(text, text, text)
def test_implicit_split_reassembles_both_transcripts(prefix, a, b):
    chosen, rejected = f"\n\nHuman: {prefix}\n\nAssistant: {a}", f"\n\nHuman: {prefix}\n\nAssistant: {b}"
    try:
        prompt, c, r = split_transcripts(chosen, rejected)
    except BadRow as bad:
        assert bad.reason in {"identical_responses", "empty_string"}
        return
    assert prompt + c == chosen and prompt + r == rejected and c != r
    assert prompt.endswith("Assistant:")
    assert prompt.startswith(f"\n\nHuman: {prefix}")


@given(text, text)
def test_implicit_split_of_free_text_never_loses_characters(a, b):
    try:
        prompt, c, r = split_transcripts(a, b)
    except BadRow:
        return
    assert prompt + c == a and prompt + r == b and prompt.strip()


CORRUPTIONS = {
    "malformed_json": lambda i: '{"prompt": "p", "chosen": ',
    "identical_responses": lambda i: json.dumps({"prompt": f"p{i}", "chosen": "x", "rejected": "x"}),
    "missing_field": lambda i: json.dumps({"prompt": f"p{i}", "chosen": "x"}),
    "probability_out_of_range": lambda i: json.dumps(
        {"prompt": "p", "chosen": "a", "rejected": "b", "preference_prob": -0.1}
    ),
    "empty_string": lambda i: json.dumps({"prompt": "p", "chosen": "", "rejected": "b"}),
    "non_finite_number": lambda i: '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": Infinity}',
}


@SETTINGS
@given(
    st.lists(st.tuples(text, text, text).filter(lambda t: t[1] != t[2]), min_size=1, max_size=8),
    st.data(),
    st.sampled_from(sorted(CORRUPTIONS)),
    st.integers(0, 2),
)
def test_one_bad_line_anywhere_is_named_and_skip_keeps_the_rest(tmp_path, rows, data, reason, blank_lines):
    pos = data.draw(st.integers(0, len(rows)), label="position")
    lines = [json.dumps({"prompt": p, "chosen": c, "rejected": r}) for p, c, r in rows]
    lines.insert(pos, CORRUPTIONS[reason](pos))
    lines = [""] * blank_lines + lines  # blank lines are not rows but still count as lines
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        load_preferences(path)
    except DataError as err:
        assert err.line == blank_lines + pos + 1 and f"[{reason}]" in str(err)
    else:
        raise AssertionError("the bad line was not reported")
    res = load_preferences(path, on_bad_row="skip")
    assert res.records == [PreferencePair(*t) for t in rows]
    assert res.skipped == {reason: 1} and res.bad_rows[0]["line"] == blank_lines + pos + 1
