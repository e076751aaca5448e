"""Rows out of data files: JSONL, JSON, CSV (each optionally gzip-compressed) and Parquet.

JSONL, CSV and Parquet are read as streams (memory follows one line, one CSV row or one Parquet batch,
not the file); a JSON document is parsed whole. Every way a file can be malformed ends in a bad row
(``RawRow.error``, which the loader fails on or skips and counts) when it is confined to one row, or in
a one-line :class:`~preflab.errors.DataError` naming the file and the line reached when the rest of
the file cannot be read:

=======================================  ====================================================
problem                                  outcome
=======================================  ====================================================
malformed JSON line; bytes not UTF-8     bad row (``malformed_json``, ``undecodable_bytes``)
nesting deeper than ``rows.MAX_DEPTH``   bad row (``too_deeply_nested``)
integer over Python's 4,300 digits       bad row (``malformed_json``)
lone surrogate escape (``"\\ud800"``)    bad row (``invalid_unicode``), field named
unreadable Parquet row group             one bad row (``corrupt_data``) per row it held, so
                                         ``skip`` counts every row lost
truncated ``.gz`` (EOFError, zlib)       DataError: file, line where the data ends
``.gz`` that is not gzip                 DataError: file
CSV cell over :data:`CSV_FIELD_LIMIT`    DataError: file, line
=======================================  ====================================================
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import DataError
from .fields import CORRUPT, MALFORMED_JSON, NOT_AN_OBJECT, TOO_DEEP, UNDECODABLE, BadRow
from .rows import MAX_DEPTH, SURROGATE_ESCAPE, RawRow, decode_problem, value_problem

#: Longest CSV cell read, in characters (Python's default of 131,072 is raised to this, never lowered).
CSV_FIELD_LIMIT = 16 * 1024 * 1024
#: Rows per Parquet batch.
PARQUET_BATCH = 1024
#: What a damaged gzip stream raises while it is read.
STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when its name ends in ``.gz``; an unreadable file is a DataError."""
    try:
        return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"cannot open: {exc.strerror or exc}", file=str(path)) from None


def stream_error(path: Path, exc: BaseException, lines_read: int | None) -> DataError:
    """The one-line error for a gzip stream that broke after ``lines_read`` complete lines (None: unknown)."""
    line = lines_read + 1 if lines_read else None
    rest = "this line and those after it cannot be read" if line else "the file cannot be read"
    if isinstance(exc, EOFError):
        msg = f"the compressed data ends early (a truncated .gz); {rest}"
    elif isinstance(exc, gzip.BadGzipFile) and str(exc).startswith("Not a gzipped file") and not lines_read:
        msg = f"not gzip data although the name ends in .gz ({exc}); decompress it or drop the .gz suffix"
    else:
        msg = f"corrupt gzip data ({exc}); {rest}"
    return DataError(msg, file=str(path), line=line)


def _brackets(text: str) -> int:
    return text.count("[") + text.count("{")


# ---------------------------------------------------------------------------------------- JSONL


def jsonl_rows(path: Path) -> Iterator[RawRow]:
    """One row per non-blank line; a line that cannot be read is a bad row, a broken stream an error."""
    index = lineno = 0
    with open_binary(path) as fh:
        try:
            for lineno, raw in enumerate(fh, start=1):  # noqa: B007 (lineno is read in the handler)
                if raw.strip():
                    yield jsonl_row(index, lineno, raw)
                    index += 1
        except STREAM_ERRORS as exc:
            raise stream_error(path, exc, lineno) from None


def jsonl_row(index: int, lineno: int, raw: bytes) -> RawRow:
    """Decode and parse one JSONL line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        shown = raw.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        err = BadRow(UNDECODABLE, f"bytes that are not UTF-8 at column {exc.start + 1}: {raw[exc.start : exc.end]!r}")
        return RawRow(index, lineno, None, shown, err)
    text = text.lstrip("\ufeff") if lineno == 1 else text
    shown = text.rstrip("\r\n")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return RawRow(
            index, lineno, None, shown, BadRow(MALFORMED_JSON, f"malformed JSON: {exc.msg} (column {exc.colno})")
        )
    except (RecursionError, ValueError) as exc:  # deep nesting; an integer over the digit limit
        return RawRow(index, lineno, None, shown, decode_problem(exc))
    if not isinstance(data, dict):
        err = BadRow(NOT_AN_OBJECT, f"expected a JSON object per line, got {type(data).__name__}")
        return RawRow(index, lineno, None, data if _brackets(shown) <= MAX_DEPTH else shown, err)
    problem = value_problem(data, None, escapes=SURROGATE_ESCAPE.search(text) is not None, brackets=_brackets(text))
    if problem is not None:
        return RawRow(index, lineno, None, shown, problem)
    return RawRow(index, lineno, data, data)


# ----------------------------------------------------------------------------------------- JSON


def json_rows(path: Path, split: str = "train") -> Iterator[RawRow]:
    """A JSON document (see :func:`rows_of_document`), or JSON Lines under a ``.json`` name."""
    try:
        with open_binary(path) as fh:
            blob = fh.read()
    except STREAM_ERRORS as exc:
        raise stream_error(path, exc, None) from None
    try:
        text = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise DataError(f"bytes that are not UTF-8: {blob[exc.start : exc.end]!r}", file=str(path), line=line) from None
    del blob
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip().startswith("{"):
            # JSON Lines under a .json name (what datasets' Dataset.to_json writes by default)
            yield from jsonl_rows(path)
            return
        raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=str(path), line=exc.lineno) from None
    except RecursionError:
        raise DataError("lists / objects nested too deeply for the JSON parser", file=str(path)) from None
    except ValueError as exc:  # an integer over the digit limit
        raise DataError(decode_problem(exc).message, file=str(path), line=_long_integer_line(text)) from None
    yield from rows_of_document(doc, str(path), split, escapes=SURROGATE_ESCAPE.search(text) is not None)


def _long_integer_line(text: str) -> int | None:
    limit = sys.get_int_max_str_digits()
    match = re.search(rf"\d{{{limit + 1},}}", text) if limit else None
    return text.count("\n", 0, match.start()) + 1 if match else None


def rows_of_document(doc: Any, name: str, split: str = "train", escapes: bool = True) -> Iterator[RawRow]:
    """A JSON document: a list of objects, ``{"data": [...]}``, ``{"<split>": [...], ...}``, or columns of lists."""
    if isinstance(doc, dict):
        doc = _list_of_document(doc, name, split)
    if not isinstance(doc, list):
        raise DataError(f"a JSON file must hold a list of objects, got {type(doc).__name__}", file=name)
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            yield RawRow(i, None, None, item, BadRow(NOT_AN_OBJECT, f"expected an object, got {type(item).__name__}"))
            continue
        problem = value_problem(item, None, escapes=escapes)
        if problem is None:
            yield RawRow(i, None, item, item)
        else:
            yield RawRow(i, None, None, "(too deeply nested to store)" if problem.reason == TOO_DEEP else item, problem)


def _list_of_document(doc: dict[str, Any], name: str, split: str) -> list[Any]:
    lists = {k: v for k, v in doc.items() if isinstance(v, list)}
    splits = {k for k, v in lists.items() if v and all(isinstance(x, dict) for x in v)}
    for key in ("data", "rows", "examples", split):
        if key in splits and (len(doc) == 1 or splits == set(doc)):
            return lists[key]
    if splits and splits == set(doc):
        raise DataError(f"split '{split}' not found; available: {', '.join(doc)}", file=name)
    if lists and len(lists) == len(doc) and len({len(v) for v in lists.values()}) == 1:
        return [dict(zip(lists, values, strict=True)) for values in zip(*lists.values(), strict=True)]
    raise DataError(
        "a JSON file must hold a list of objects, {'data': [...]}, or a mapping of equal-length column lists",
        file=name,
    )


# ------------------------------------------------------------------------------------------ CSV


def csv_rows(path: Path) -> Iterator[RawRow]:
    """One row per CSV record (1-based line where it starts), streamed; all values are text."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with (
        open_binary(path) as raw,
        io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as fh,
    ):
        reader = csv.DictReader(fh)
        try:
            yield from _csv_records(path, reader)
        except STREAM_ERRORS as exc:
            raise stream_error(path, exc, reader.line_num) from None
        except csv.Error as exc:
            raise _csv_error(path, exc, reader.line_num) from None


def _csv_error(path: Path, exc: csv.Error, line: int) -> DataError:
    if "field larger than field limit" in str(exc):
        limit = csv.field_size_limit()
        return DataError(
            f"a cell is longer than {limit:,} characters (the CSV field limit); store such texts as JSONL or Parquet",
            file=str(path),
            line=line,
        )
    return DataError(f"malformed CSV: {exc}", file=str(path), line=line)


def _csv_records(path: Path, reader: csv.DictReader[str]) -> Iterator[RawRow]:
    header = reader.fieldnames or []
    if any(_has_bad_bytes(h) for h in header):
        raise DataError("the CSV header holds bytes that are not UTF-8", file=str(path), line=1)
    for index, row in enumerate(reader):
        line = reader.line_num - sum(_line_breaks(v) for v in _cells(row))  # where the row starts
        bad = next((k for k, v in row.items() if isinstance(v, str) and _has_bad_bytes(v)), None)
        if None in row:
            err = BadRow(NOT_AN_OBJECT, f"row has {len(header) + len(row[None])} cells, the header has {len(header)}")
            yield RawRow(index, line, None, _csv_raw(row), err)
        elif bad is not None:
            yield RawRow(index, line, None, _csv_raw(row), BadRow(UNDECODABLE, "bytes that are not UTF-8", bad))
        else:
            try:
                data = {k: csv_cell(v, k) if v is not None else None for k, v in row.items()}
            except BadRow as err:
                yield RawRow(index, line, None, dict(row), err)
            else:
                yield RawRow(index, line, data, dict(row))


def csv_cell(value: str, name: str) -> Any:
    """A CSV cell: JSON objects and lists written into a cell are parsed back, other text stays text."""
    stripped = value.strip()
    if stripped[:1] in ("[", "{") and stripped[-1:] in ("]", "}"):
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            return value
        except (RecursionError, ValueError) as exc:
            raise decode_problem(exc, name) from None
        if isinstance(parsed, dict | list):
            escapes = SURROGATE_ESCAPE.search(stripped) is not None
            problem = value_problem(parsed, name, escapes=escapes, brackets=_brackets(stripped))
            if problem is not None:
                raise problem
            return parsed
    return value


def _cells(row: Mapping[Any, Any]) -> Iterator[str]:
    for value in row.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):  # cells beyond the header
            yield from (v for v in value if isinstance(v, str))


def _line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _csv_raw(row: Mapping[Any, Any]) -> dict[str, Any]:
    def clean(v: Any) -> Any:
        if isinstance(v, str):
            return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return [clean(x) for x in v] if isinstance(v, list) else v

    return {str(k): clean(v) for k, v in row.items()}


# -------------------------------------------------------------------------------------- Parquet


def parquet_rows(path: Path) -> Iterator[RawRow]:
    """Rows in batches of :data:`PARQUET_BATCH`, one row group at a time (0-based row indexes).

    Page checksums are verified where the writer stored them. A row group that cannot be decoded
    yields one ``corrupt_data`` bad row for each of its rows not yet read (the footer knows how many).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path, page_checksum_verification=True)
        sizes = [pfile.metadata.row_group(g).num_rows for g in range(pfile.num_row_groups)]
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a bad file
        raise DataError(f"cannot read Parquet: {exc}", file=str(path)) from None
    index = 0
    for group, size in enumerate(sizes):
        done = 0
        try:
            for batch in pfile.iter_batches(batch_size=PARQUET_BATCH, row_groups=[group]):
                for item in batch.to_pylist():
                    yield RawRow(index, None, item, item)
                    index += 1
                    done += 1
        except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: invalid UTF-8 in a string
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            err = BadRow(
                CORRUPT,
                f"row group {group} (rows {index - done}-{index - done + size - 1}) cannot be decoded: {reason}",
            )
            for _ in range(size - done):
                yield RawRow(index, None, None, None, err)
                index += 1
