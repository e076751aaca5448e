"""Fault injection for ``data convert`` and ``data inspect`` (issue 23, items 8 and 12).

``convert`` refuses to overwrite its input, writes the format the output suffix names (atomically:
a failure leaves any old output untouched and no temporary file behind), and refuses what would not
read back. ``inspect`` exits 2 under ``--strict`` when a row is bad, streams rows into length
histograms, and keeps its length table's columns apart for 7-digit numbers.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fault_helpers import jsonl_bytes
from fault_helpers import run_cli_output as run_cli
from preflab.data import PreferencePair, Ranking, Unpaired, load_preferences, save_records, stream_preferences
from preflab.data.stats import LengthStats, format_table
from preflab.data.writers import check_output, write_records
from preflab.errors import DataError

GOOD = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(40)]
GOOD_RECORDS = [PreferencePair(f"p{i}", f"c{i}", f"r{i}") for i in range(40)]
BAD_LINES = [
    '{"prompt": "p", "chosen": ' + "[" * 100_000 + "]" * 100_000 + ', "rejected": "r"}',
    '{"prompt": "p", "chosen": "a", "rejected": "b", "weight": ' + "1" * 5000 + "}",
    '{"prompt": "p", "chosen": "a\\ud800", "rejected": "b"}',
    '{"prompt": "p", "chosen": ',
]


# ---------------------------------------------------------------------------------- convert


def test_convert_refuses_to_overwrite_its_input(tmp_path, monkeypatch, capsys):
    src = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(GOOD), src)
    before = src.read_bytes()
    os.link(src, tmp_path / "hard.parquet")
    (tmp_path / "link.parquet").symlink_to(src)
    for out in (src, tmp_path / "hard.parquet", tmp_path / "link.parquet", tmp_path / "." / "x.parquet"):
        code, _, err = run_cli(["data", "convert", str(src), str(out), "--to", "pairs"], monkeypatch, capsys)
        assert code == 2 and err.count("\n") == 1 and "the output is the input file" in err
    assert src.read_bytes() == before


def test_convert_refuses_unknown_suffixes_and_directories_before_reading(tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(
        ["data", "convert", "missing.jsonl", str(tmp_path / "o.txt"), "--to", "pairs"], monkeypatch, capsys
    )
    assert code == 2 and "cannot write a '.txt' file" in err and ".jsonl, .json, .csv" in err and ".parquet" in err
    code, _, err = run_cli(["data", "convert", "missing.jsonl", str(tmp_path), "--to", "pairs"], monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1
    for bad in ("o.parquet.gz", "o", "o.jsonl.bz2"):
        with pytest.raises(DataError, match="the output's suffix picks the format"):
            check_output(tmp_path / bad)
    assert not list(tmp_path.iterdir())


def test_convert_parquet_to_jsonl_to_parquet_keeps_every_row(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(GOOD), src)
    mid, back = tmp_path / "mid.jsonl", tmp_path / "back.parquet"
    for a, b in ((src, mid), (mid, back)):
        code, out, err = run_cli(["data", "convert", str(a), str(b), "--to", "pairs"], monkeypatch, capsys)
        assert code == 0, err
    assert json.loads(mid.read_text().splitlines()[0]) == GOOD[0]
    assert pq.read_table(back).to_pylist() == GOOD
    assert load_preferences(back).records == load_preferences(src).records == GOOD_RECORDS


MSGS = [{"role": "user", "content": "hi"}]
ROUND_TRIPS = [
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
        PreferencePair(
            "q2", " lead and trail ", 'multi\nline, "quoted"', metadata={"score_chosen": 1.0, "note": {"k": []}}
        ),
    ],
    [PreferencePair(MSGS, [{"role": "assistant", "content": "yo"}], [{"role": "assistant", "content": "no"}])],
    [Unpaired("q", "a", True, id="u", weight=3.0), Unpaired("q", "b", False, id="v")],
    [
        Ranking("q", ["a", "b", "c"], scores=[1.0, 2.5, 0.0], id="r", annotator="z"),
        Ranking("q2", ["a", "b"], scores=[2, 1]),
    ],
    [Ranking("q2", ["a", "b"], ranks=[2, 1])],
]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz"])
def test_every_written_format_reads_back_to_the_same_records(tmp_path, suffix):
    for i, records in enumerate(ROUND_TRIPS):
        path = write_records(records, tmp_path / f"{i}{suffix}")
        assert load_preferences(path).records == records, (suffix, i)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_gzip_output_is_reproducible(tmp_path):
    a = write_records(GOOD_RECORDS, tmp_path / "a.jsonl.gz").read_bytes()
    assert write_records(GOOD_RECORDS, tmp_path / "b.jsonl.gz").read_bytes() == a


def test_writers_refuse_what_would_not_read_back(tmp_path):
    with pytest.raises(DataError, match="would read back from a CSV cell as JSON") as err:
        write_records([PreferencePair("[1, 2]", "a", "b")], tmp_path / "x.csv")
    assert (err.value.row, err.value.field) == (0, "prompt")
    with pytest.raises(DataError, match="mix types") as err:
        write_records([PreferencePair("q", "a", "b"), PreferencePair(MSGS, "a", "b")], tmp_path / "x.parquet")
    assert err.value.field == "prompt"
    with pytest.raises(DataError, match="non-finite"):
        write_records([Ranking("q", ["a", "b"], scores=[float("nan"), 1.0])], tmp_path / "x.csv")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".csv.gz"])
def test_a_lone_surrogate_fails_the_write_and_keeps_the_old_output(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"old")
    records = [*GOOD_RECORDS[:3], PreferencePair("p", "a\ud800", "b"), *GOOD_RECORDS[3:]]
    with pytest.raises(DataError) as err:
        write_records(records, out)
    assert (err.value.file, err.value.row, err.value.field) == (str(out), 3, "chosen")
    assert "surrogate" in str(err.value) and out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    with pytest.raises(DataError, match="surrogate"):
        save_records(records, tmp_path / "s.jsonl")


def test_convert_skip_accounting_balances_on_a_damaged_file(tmp_path, monkeypatch, capsys):
    bad = BAD_LINES
    lines = [json.dumps(r) for r in GOOD] + bad
    (src := tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    out, report = tmp_path / "o.parquet", tmp_path / "skipped.jsonl"
    code, stdout, err = run_cli(
        ["data", "convert", str(src), str(out), "--to", "pairs", "--on-bad-row", "skip", "--report", str(report)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert f"{len(lines)} rows (preference) -> {len(GOOD)} pairs" in stdout and f"{len(bad)} bad rows skipped" in stdout
    assert len(report.read_text().splitlines()) == len(bad)
    assert load_preferences(out).records == GOOD_RECORDS


# ---------------------------------------------------------------------------------- inspect


def test_inspect_strict_exits_2_after_the_report(tmp_path, monkeypatch, capsys):
    (path := tmp_path / "d.jsonl").write_bytes(
        jsonl_bytes(GOOD[:5]) + BAD_LINES[2].encode() + b"\n" + jsonl_bytes(GOOD[5:])
    )
    code, out, err = run_cli(["data", "inspect", str(path), "-t", "none", "--strict"], monkeypatch, capsys)
    assert code == 2 and "rows:     41 read, 40 valid, 1 bad" in out and "invalid_unicode" in out
    assert err == f"error: {path}: 1 bad row(s) (--strict)\n"
    assert run_cli(["data", "inspect", str(path), "-t", "none"], monkeypatch, capsys)[0] == 0
    (good := tmp_path / "g.jsonl").write_bytes(jsonl_bytes(GOOD))
    assert run_cli(["data", "inspect", str(good), "-t", "none", "--strict"], monkeypatch, capsys)[0] == 0
    _, helptext, _ = run_cli(["data", "inspect", "--help"], monkeypatch, capsys)
    assert "code 2" in " ".join(helptext.split())


def test_inspect_table_keeps_7_digit_columns_apart(tmp_path, monkeypatch, capsys):
    rows = [{"prompt": "p" * 1_234_567, "chosen": "c" * 2_345_678, "rejected": "r"}, *GOOD[:2]]
    (path := tmp_path / "long.jsonl").write_bytes(jsonl_bytes(rows))
    code, out, _ = run_cli(["data", "inspect", str(path), "-t", "none"], monkeypatch, capsys)
    assert code == 0
    table = out.split("lengths (characters):\n")[1].split("findings")[0].splitlines()
    cells = {line.split()[0]: line.split()[1:] for line in table}
    assert cells["field"] == ["count", "p50", "p90", "p99", "max", "mean"]
    assert cells["prompt"] == ["3", "2", "1234567", "1234567", "1234567", "411523.7"]
    assert cells["chosen"] == ["3", "2", "2345678", "2345678", "2345678", "781894.0"]
    assert len({len(line) for line in table}) == 1  # right-aligned columns end together


def test_format_table_separates_every_column():
    lines = format_table(("field", "count"), [("prompt", 1234567), ("x", 1)])
    assert lines == ["  field     count", "  prompt  1234567", "  x             1"]


def test_length_histogram_percentiles_equal_numpy_nearest_rank():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        lengths = rng.integers(0, 50, size=n).tolist()
        s = LengthStats.of("x", lengths)
        want = [int(np.percentile(lengths, q, method="inverted_cdf")) for q in (50, 90, 99)]
        assert [s.p50, s.p90, s.p99] == want and s.max == max(lengths) and s.mean == pytest.approx(np.mean(lengths))


def test_records_are_streamed_not_read_ahead():
    pulled = []

    def rows():
        for i, row in enumerate(GOOD):
            pulled.append(i)
            yield row

    result, records = stream_preferences(rows())
    assert next(records) == GOOD_RECORDS[0] and len(pulled) <= 2 and result.format == "preference"
    assert list(records) == GOOD_RECORDS[1:] and result.n_rows == len(GOOD)
