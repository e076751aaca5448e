"""Demonstrations (supervised fine-tuning data): TRL's prompt-completion and ``messages`` formats, exact records,
bad rows named by file, line and field, and the unpaired (KTO) format left as it was."""

from __future__ import annotations

import json

import pytest

from preflab import Demonstration
from preflab.data import Unpaired, convert, detect_format, load_preferences, save_records
from preflab.errors import DataError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def U(text):
    return [{"role": "user", "content": text}]


def A(text):
    return [{"role": "assistant", "content": text}]


SYS = {"role": "system", "content": "Be brief."}


def test_prompt_completion_rows_are_demonstrations(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "Say hi.", "completion": "hi", "id": 7, "weight": 2.0, "source": "web"},
            {"prompt": U("Say yo."), "completion": "yo"},
            {"prompt": U("Say ok."), "completion": A("ok")},
        ],
    )
    res = load_preferences(path)
    assert (res.format, res.kind, res.n_rows) == ("prompt_completion", "demonstrations", 3)
    assert res.records == [
        Demonstration("Say hi.", "hi", id="7", weight=2.0, metadata={"source": "web"}),
        Demonstration(U("Say yo."), A("yo")),  # a message prompt makes the string completion an assistant turn
        Demonstration(U("Say ok."), A("ok")),
    ]
    assert "1 row(s): string responses made assistant messages" in res.findings


def test_messages_rows_split_at_the_last_assistant_turn(tmp_path):
    conv = [SYS, *U("2+2?"), *A("4"), *U("and 3+3?"), *A("6")]
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": conv, "id": "a"}])
    res = load_preferences(path)
    assert (res.format, res.kind) == ("messages", "demonstrations")
    assert res.records == [Demonstration(conv[:-1], A("6"), id="a")]


def test_a_demonstrations_file_round_trips(tmp_path):
    records = [Demonstration("p", "c", id="1"), Demonstration("q", "d", weight=0.5, metadata={"k": 1})]
    out = save_records(records, tmp_path / "out.jsonl")
    assert json.loads(out.read_text().splitlines()[0]) == {"prompt": "p", "completion": "c", "id": "1"}
    assert load_preferences(str(out)).records == records


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        ({"prompt": "p", "completion": "c"}, "prompt_completion"),
        ({"prompt": "p", "completion": "c", "label": True}, "unpaired"),  # KTO stays KTO
        ({"messages": [*U("q"), *A("a")]}, "messages"),
    ],
)
def test_detect_format(row, fmt):
    assert detect_format(row) == fmt


def test_a_row_with_a_label_stays_unpaired_unless_demonstrations_are_asked_for(tmp_path):
    path = write_jsonl(
        tmp_path / "u.jsonl", [{"prompt": "p", "completion": "c", "label": True}, {"prompt": "q", "completion": "d"}]
    )
    with pytest.raises(DataError) as err:  # the KTO reading: the second row misses its label
        load_preferences(path)
    assert str(err.value) == f"{path}, line 2, field 'label': required field is missing [missing_field]"
    with pytest.raises(DataError) as err:
        load_preferences(path, kind="demonstrations")
    assert str(err.value) == (
        f"{path}, line 1, field 'label': a demonstration has no label (a row with a label is unpaired feedback: "
        "use kind unpaired for KTO) [unexpected_field]"
    )
    assert load_preferences(
        write_jsonl(tmp_path / "k.jsonl", [{"prompt": "p", "completion": "c", "label": 0}])
    ).records == [Unpaired("p", "c", False)]


BAD = [
    ({"prompt": "p", "completion": ""}, "completion", "empty string [empty_string]"),
    ({"prompt": "p", "completion": "  "}, "completion", "string holds only whitespace [empty_string]"),
    ({"prompt": "", "completion": "c"}, "prompt", "empty string [empty_string]"),
    ({"prompt": "p", "completion": 3}, "completion", "expected a string or a list of chat messages, got int"),
    (
        {"messages": [*U("q"), *A("a"), *U("more")]},
        "messages",
        "the last message (message 2) has role 'user'; a demonstration ends with the assistant's completion "
        "[bad_message]",
    ),
    ({"messages": A("a")}, "messages", "a conversation needs a prompt turn before the assistant's completion"),
    ({"messages": [*U("q"), *A("")]}, "messages", "the last message (message 1) has empty content [empty_string]"),
    ({"messages": []}, "messages", "empty message list [empty_string]"),
    ({"messages": [*U("q"), {"content": "a"}]}, "messages", "message 1 has no 'role' string [bad_message]"),
    ({"messages": [*U("q"), *A("a")], "prompt": "p"}, "prompt", "give either messages or prompt/completion"),
]


@pytest.mark.parametrize(("row", "field", "message"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_rows_name_the_file_line_and_field(tmp_path, row, field, message):
    good = {"messages": [*U("q"), *A("a")]} if "messages" in row else {"prompt": "p", "completion": "c"}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert str(err.value).startswith(f"{path}, line 2, field '{field}': {message}")
    res = load_preferences(path, on_bad_row="skip")  # skipping counts and reports it, never drops it silently
    assert len(res.records) == 1 and sum(res.skipped.values()) == 1 and res.bad_rows[0]["line"] == 2


def test_preferences_and_demonstrations_do_not_convert(tmp_path):
    with pytest.raises(DataError, match="pairs cannot be converted to demonstrations"):
        load_preferences([{"prompt": "p", "chosen": "a", "rejected": "b"}], kind="demonstrations")
    with pytest.raises(DataError, match="demonstrations cannot be converted to pairs"):
        convert([Demonstration("p", "c")], "pairs")


def test_data_convert_writes_messages_rows_as_prompt_completion_demonstrations(tmp_path):
    from typer.testing import CliRunner

    from preflab.cli import app

    conv = [*U("q"), *A("a")]
    src = write_jsonl(tmp_path / "m.jsonl", [{"messages": conv}])
    out = tmp_path / "d.csv"
    res = CliRunner().invoke(app, ["data", "convert", src, str(out), "--to", "demonstrations"])
    assert res.exit_code == 0, res.output
    assert "1 rows (messages) -> 1 demonstrations" in res.output
    assert load_preferences(str(out)).records == [Demonstration(U("q"), A("a"))]
