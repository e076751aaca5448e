"""Fault injection for the data readers (issue 23, item 7); convert and inspect have their own file.

Each malformed input is built in ``tmp_path``. A fault confined to one row must be a bad row: ``error``
fails naming file, line / row and field; ``skip`` counts it, so rows read = kept + skipped and every
good row is kept (no row lost). A fault that makes the rest of a file unreadable must be a one-line
:class:`DataError` naming the file (and line), under ``skip`` too, so nothing is dropped silently.
Through the command line each is ``error: ...`` on one stderr line and exit code 2.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fault_helpers import jsonl_bytes
from fault_helpers import run_cli_output as run_cli
from preflab.data import PreferencePair, load_preferences
from preflab.data import files as readers
from preflab.errors import DataError

GOOD = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
GOOD_RECORDS = [PreferencePair(f"p{i}", f"c{i}", f"r{i}") for i in range(40)]


def csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def with_bad_line(bad: str, at: int = 5) -> bytes:
    """GOOD as JSONL with ``bad`` inserted as line ``at + 1``."""
    lines = [json.dumps(r) for r in GOOD]
    lines.insert(at, bad)
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------ whole-file faults


def truncated_jsonl_gz(tmp: Path) -> Path:
    blob = gzip.compress(jsonl_bytes(GOOD * 50))
    (path := tmp / "cut.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    return path


def truncated_csv_gz(tmp: Path) -> Path:
    blob = gzip.compress(csv_bytes(GOOD * 50))
    (path := tmp / "cut.csv.gz").write_bytes(blob[: len(blob) // 2])
    return path


def truncated_json_gz(tmp: Path) -> Path:
    blob = gzip.compress(json.dumps(GOOD * 50).encode())
    (path := tmp / "cut.json.gz").write_bytes(blob[: len(blob) - 40])
    return path


def not_gzip(tmp: Path) -> Path:
    (path := tmp / "plain.jsonl.gz").write_bytes(jsonl_bytes(GOOD))
    return path


def corrupt_gzip_body(tmp: Path) -> Path:
    blob = bytearray(gzip.compress(jsonl_bytes(GOOD * 50)))
    for i in range(len(blob) // 2, len(blob) // 2 + 16):
        blob[i] ^= 0xFF
    (path := tmp / "flipped.jsonl.gz").write_bytes(bytes(blob))
    return path


def csv_cell_over_limit(tmp: Path) -> Path:
    """A cell longer than the CSV field limit (the test lowers the limit to 150,000)."""
    rows = [GOOD[0], {"prompt": "p", "chosen": "x" * 200_000, "rejected": "r"}, GOOD[1]]
    (path := tmp / "huge.csv").write_bytes(csv_bytes(rows))
    return path


def deep_json_document(tmp: Path) -> Path:
    (path := tmp / "deep.json").write_text("[" + "[" * 100_000 + "]" * 100_000 + "]")
    return path


def long_integer_json_document(tmp: Path) -> Path:
    rows = (
        json.dumps(GOOD[:3], indent=1)[:-1]
        + ',\n{"prompt": "p", "chosen": "a", "rejected": "b", "weight": '
        + "1" * 5000
        + "}]"
    )
    (path := tmp / "bigint.json").write_text(rows)
    return path


FILE_FAULTS: list[tuple[str, Callable[[Path], Path], str, bool]] = [
    # (name, builder, message part, line expected)
    ("truncated .jsonl.gz", truncated_jsonl_gz, "truncated .gz", True),
    ("truncated .csv.gz", truncated_csv_gz, "truncated .gz", True),
    ("truncated .json.gz", truncated_json_gz, "truncated .gz", False),
    (".gz that is not gzip", not_gzip, "not gzip data", False),
    # garbage may decode before the CRC check fails: "error" then stops at the first garbled line
    ("flipped bytes in a .gz", corrupt_gzip_body, "gzip data|malformed JSON", True),
    ("CSV cell over the field limit", csv_cell_over_limit, "the CSV field limit", True),
    ("100k-deep JSON document", deep_json_document, "nested too deeply", False),
    ("5,000-digit integer in a JSON document", long_integer_json_document, "more than 4300 digits", True),
]


@pytest.fixture
def low_csv_limit(monkeypatch):
    """Python's default CSV field limit, with the reader's own raised to only 150,000 characters."""
    old = csv.field_size_limit()
    csv.field_size_limit(131_072)
    monkeypatch.setattr(readers, "CSV_FIELD_LIMIT", 150_000)
    yield
    csv.field_size_limit(old)


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
@pytest.mark.parametrize(("name", "build", "message", "has_line"), FILE_FAULTS, ids=[f[0] for f in FILE_FAULTS])
def test_a_damaged_file_is_one_data_error_naming_it(
    tmp_path, low_csv_limit, name, build, message, has_line, on_bad_row
):
    path = build(tmp_path)
    with pytest.raises(DataError) as err:
        load_preferences(path, on_bad_row=on_bad_row)
    assert err.value.file == str(path) and re.search(message, str(err.value))
    assert (err.value.line is not None) == has_line, str(err.value)
    assert "\n" not in str(err.value)


def test_truncated_gzip_names_the_first_line_it_cannot_read(tmp_path):
    path = truncated_jsonl_gz(tmp_path)
    with gzip.open(path, "rt") as fh:
        whole = []
        with pytest.raises(EOFError):
            for line in fh:
                whole.append(line)
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert 1 < err.value.line <= len(whole) + 1


@pytest.mark.parametrize(("name", "build", "message", "has_line"), FILE_FAULTS, ids=[f[0] for f in FILE_FAULTS])
def test_cli_prints_damaged_files_on_one_line_with_exit_2(
    tmp_path, low_csv_limit, monkeypatch, capsys, name, build, message, has_line
):
    path = build(tmp_path)
    for args in (
        ["data", "inspect", str(path), "-t", "none"],
        ["data", "convert", str(path), str(tmp_path / "out.jsonl"), "--to", "pairs", "--on-bad-row", "skip"],
    ):
        code, _, err = run_cli(args, monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {path}") and re.search(message, err)
        assert "Traceback" not in err and "Aborted" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_long_csv_cell_within_the_raised_limit_is_read(tmp_path):
    rows = [GOOD[0], {"prompt": "p", "chosen": "x" * 200_000, "rejected": "r"}, *GOOD[1:]]
    (path := tmp_path / "long.csv").write_bytes(csv_bytes(rows))
    result = load_preferences(path)
    assert len(result.records) == len(rows) and len(result.records[1].chosen) == 200_000


# ------------------------------------------------------------------------------- row faults


def parquet_with_corrupt_group(tmp: Path, checksum: bool) -> Path:
    """300 rows in row groups of 100; bytes flipped in the middle of row group 1's 'chosen' chunk."""
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}" * 5, "rejected": f"r{i}"} for i in range(300)]
    path = tmp / "corrupt.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=100, write_page_checksum=checksum)
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    blob = bytearray(path.read_bytes())
    middle = start + chunk.total_compressed_size // 2
    for i in range(middle, middle + 8):
        blob[i] ^= 0x5A
    path.write_bytes(bytes(blob))
    return path


ROW_FAULTS: list[tuple[str, str, str, str | None]] = [
    # (name, bad JSONL line, reason, field)
    (
        "100k-deep JSON line",
        '{"prompt": "p", "chosen": ' + "[" * 100_000 + "]" * 100_000 + ', "rejected": "r"}',
        "too_deeply_nested",
        None,
    ),
    (
        "150-deep metadata",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "metadata": {"x": ' + "[" * 150 + "]" * 150 + "}}",
        "too_deeply_nested",
        "metadata",
    ),
    (
        "5,000-digit integer",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": ' + "1" * 5000 + "}",
        "malformed_json",
        None,
    ),
    (
        "4,000-digit integer weight",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": ' + "1" * 4000 + "}",
        "non_finite_number",
        "weight",
    ),
    ("lone surrogate", '{"prompt": "p", "chosen": "a\\ud800", "rejected": "b"}', "invalid_unicode", "chosen"),
    (
        "lone low surrogate in a message",
        '{"prompt": [{"role": "user", "content": "\\udfff"}], "chosen": "a", "rejected": "b"}',
        "invalid_unicode",
        "prompt",
    ),
]


@pytest.mark.parametrize(("name", "bad", "reason", "field"), ROW_FAULTS, ids=[f[0] for f in ROW_FAULTS])
def test_a_bad_json_line_is_a_counted_bad_row(tmp_path, name, bad, reason, field):
    (path := tmp_path / "d.jsonl").write_bytes(with_bad_line(bad))
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 6, field) and reason in str(err.value)
    report = tmp_path / "skipped.jsonl"
    result = load_preferences(path, on_bad_row="skip", report_path=report)
    assert result.records == GOOD_RECORDS  # no good row lost
    assert result.n_rows == len(result.records) + sum(result.skipped.values()) and result.skipped == {reason: 1}
    [entry] = [json.loads(line) for line in report.read_text().splitlines()]
    assert (entry["line"], entry["reason"], entry["field"]) == (6, reason, field)


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("[" * 5000 + "]" * 5000, "too_deeply_nested"),
        ("[" + "1" * 5000 + "]", "malformed_json"),
        ('[{"role": "user", "content": "\\ud800"}]', "invalid_unicode"),
    ],
)
def test_a_bad_json_cell_in_a_csv_is_a_counted_bad_row(tmp_path, cell, reason):
    rows = [*GOOD[:3], {"prompt": cell, "chosen": "a", "rejected": "b"}, *GOOD[3:]]
    (path := tmp_path / "d.csv").write_bytes(csv_bytes(rows))
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.line, err.value.field) == (5, "prompt") and reason in str(err.value)
    result = load_preferences(path, on_bad_row="skip")
    assert result.records == GOOD_RECORDS and result.skipped == {reason: 1} and result.n_rows == 41


def test_a_paired_surrogate_escape_is_valid_text(tmp_path):
    (path := tmp_path / "d.jsonl").write_text('{"prompt": "p", "chosen": "\\ud83d\\ude00", "rejected": "b"}\n')
    assert load_preferences(path).records[0].chosen == "\U0001f600"


@pytest.mark.parametrize("checksum", [False, True])
def test_a_corrupt_parquet_page_costs_exactly_its_row_group(tmp_path, checksum):
    path = parquet_with_corrupt_group(tmp_path, checksum)
    result = load_preferences(path, on_bad_row="skip")
    assert result.n_rows == 300 and sum(result.skipped.values()) == 100 and result.skipped.keys() == {"corrupt_data"}
    kept = {r.prompt for r in result.records}
    assert len(kept) == 200 and kept == {f"p{i}" for i in range(300)} - {f"p{i}" for i in range(100, 200)}
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.file, err.value.row) == (str(path), 100) and "cannot be decoded" in str(err.value)


def test_a_parquet_file_with_every_row_unreadable_says_why(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f"c{i}" * 5, "rejected": f"r{i}"} for i in range(50)]
    path = tmp_path / "all.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, write_page_checksum=True)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    blob = bytearray(path.read_bytes())
    blob[(chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"none of the first 50 rows could be read.*CRC.*corrupt_data"):
        load_preferences(path, on_bad_row="skip")
