"""Records to files, in the format the output path's suffix names; every file is written atomically.

=========================  ================================================================
suffix                     layout
=========================  ================================================================
``.jsonl``, ``.ndjson``    one record per line (what :func:`save_records` writes)
``.json``                  one JSON list of records
``.csv``                   one column per field; messages, lists and metadata as JSON text
                           in their cells (what the CSV reader parses back)
``.parquet``, ``.pq``      one column per field (Arrow types inferred from all rows);
                           metadata becomes a struct, so a key missing from one row reads
                           back as null there
=========================  ================================================================

The three text formats may end in ``.gz`` (gzip, with no name and a zero time in its header, so the
bytes are reproducible). Field names and the rows written are those of :func:`~preflab.data.serialize.record_to_dict`,
so every format reads back with :func:`~preflab.data.load_preferences` to the same records. A file is
written to a temporary name beside the target and renamed onto it only once complete, so a failure
never leaves a half-written output nor touches an existing file.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import DataError
from .rows import value_problem
from .serialize import CORE_FIELDS, Record, dumps_record, record_to_dict

#: Output suffix -> format written.
WRITE_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
WRITTEN = ".jsonl, .json, .csv (each optionally .gz) or .parquet"
#: Rows per Parquet row group (a corrupt page then costs at most this many rows on reading).
PARQUET_ROW_GROUP = 8192


def output_format(path: str | Path) -> str:
    """The format that ``path``'s suffix names, or a DataError listing the formats written."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    suffix = suffixes[-2] if gz and len(suffixes) > 1 else suffixes[-1] if suffixes and not gz else ""
    fmt = WRITE_FORMATS.get(suffix)
    if fmt is None or (gz and fmt == "parquet"):
        shown = "".join(path.suffixes[-2:] if gz else path.suffixes[-1:]) or "(none)"
        raise DataError(
            f"cannot write a '{shown}' file; the output's suffix picks the format: {WRITTEN}", file=str(path)
        )
    return fmt


def check_output(out: str | Path, source: Any = None) -> str:
    """Refuse an output that is a directory or the source file itself; return its format."""
    out = Path(out).expanduser()
    fmt = output_format(out)
    if out.is_dir():
        raise DataError("the output is a directory; give a file name", file=str(out))
    if isinstance(source, str | Path):
        src = Path(source).expanduser()
        if out.exists() and src.exists() and os.path.samefile(src, out):
            raise DataError(
                "the output is the input file; write to another path (the input would be lost)", file=str(out)
            )
    return fmt


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path``, renamed onto it when the block succeeds and removed when it fails.

    The file gets the mode a plain ``open`` would (0666 less the umask), not ``mkstemp``'s 0600.
    """
    if path.is_dir():
        raise DataError("the output is a directory; give a file name", file=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_records(records: Iterable[Record], path: str | Path, format: str | None = None) -> Path:
    """Write ``records`` to ``path`` in ``format`` (default: from the suffix, :func:`output_format`).

    Records of different kinds may not be mixed in one file (a loader could not tell the file's kind);
    text that is not valid Unicode (a lone surrogate) is a DataError naming the row and field.
    """
    path = Path(path)
    fmt = format or output_format(path)
    writer = {"jsonl": _write_jsonl, "json": _write_json, "csv": _write_csv, "parquet": _write_parquet}[fmt]
    with atomic_path(path) as tmp:
        writer(_one_kind(records, path), tmp, path)
    return path


def _one_kind(records: Iterable[Record], path: Path) -> Iterator[Record]:
    kind: type | None = None
    for i, record in enumerate(records):
        if kind is None:
            kind = type(record)
        elif type(record) is not kind:
            raise DataError(
                f"cannot mix {kind.__name__} and {type(record).__name__} records in one file", file=str(path), row=i
            )
        yield record


@contextlib.contextmanager
def _text_file(tmp: Path, path: Path) -> Iterator[IO[str]]:
    if path.suffix.lower() != ".gz":
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            yield fh
        return
    # no file name and a zero time in the gzip header: the same records give the same bytes
    with (
        open(tmp, "wb") as sink,
        gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as fh,
    ):
        yield fh


def _put(fh: IO[str], text: str, path: Path, row: int, record: Record) -> None:
    """Write ``text`` (row ``row``); a lone surrogate in it is a DataError naming row and field."""
    try:
        fh.write(text)
    except UnicodeEncodeError:
        raise _surrogate_error(path, row, record_to_dict(record)) from None


def _surrogate_error(path: Path, row: int, data: dict[str, Any]) -> DataError:
    problem = value_problem(data, None)
    return DataError(
        "text holds a lone UTF-16 surrogate (e.g. \\ud800), which UTF-8 cannot store",
        file=str(path),
        row=row,
        field=problem.field if problem else None,
    )


def _json_line(record: Record, path: Path, row: int) -> str:
    try:
        return dumps_record(record)
    except DataError as err:
        raise DataError(err.message, file=str(path), row=row) from None


def _write_jsonl(records: Iterable[Record], tmp: Path, path: Path) -> None:
    with _text_file(tmp, path) as fh:
        for i, record in enumerate(records):
            _put(fh, _json_line(record, path, i) + "\n", path, i, record)


def _write_json(records: Iterable[Record], tmp: Path, path: Path) -> None:
    with _text_file(tmp, path) as fh:
        fh.write("[")
        for i, record in enumerate(records):
            _put(fh, ("," if i else "") + "\n" + _json_line(record, path, i), path, i, record)
        fh.write("\n]\n")


def _table(records: Iterable[Record], path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Every record as a dict, and the union of their fields (core fields first); NaN refused."""
    records = list(records)
    rows = [record_to_dict(r) for r in records]
    for i, row in enumerate(rows):
        bad = next((k for k, v in row.items() if not _finite(v)), None)
        if bad is not None:
            raise DataError("holds a non-finite number (NaN or infinity)", file=str(path), row=i, field=bad)
    core = CORE_FIELDS.get(type(records[0]), ()) if records else ()
    present = dict.fromkeys(k for row in rows for k in row)
    columns = [k for k in core if k in present] + [k for k in present if k not in core]
    return columns, rows


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _csv_text(value: Any, path: Path, row: int, field: str) -> str:
    """One CSV cell that the CSV reader turns back into ``value``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        stripped = value.strip()
        if stripped[:1] in ("[", "{") and stripped[-1:] in ("]", "}"):
            with contextlib.suppress(ValueError, RecursionError):
                if isinstance(json.loads(stripped), dict | list):
                    raise DataError(
                        "this text would read back from a CSV cell as JSON, not as text; write "
                        ".jsonl or .parquet instead",
                        file=str(path),
                        row=row,
                        field=field,
                    )
        return value
    return repr(value) if isinstance(value, float) else str(value)


def _write_csv(records: Iterable[Record], tmp: Path, path: Path) -> None:
    columns, rows = _table(records, path)
    with _text_file(tmp, path) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for i, row in enumerate(rows):
            cells = [_csv_text(row.get(c), path, i, c) for c in columns]
            try:
                writer.writerow(cells)
            except UnicodeEncodeError:
                raise _surrogate_error(path, i, row) from None


def _write_parquet(records: Iterable[Record], tmp: Path, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns, rows = _table(records, path)
    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        try:
            arrays[name] = pa.array(values)
        except UnicodeEncodeError:
            i = next((i for i, row in enumerate(rows) if value_problem({name: row.get(name)}, None)), 0)
            raise _surrogate_error(path, i, {name: rows[i].get(name)}) from None
        except (pa.ArrowException, OverflowError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(
                f"cannot store this column in Parquet ({reason}): its rows mix types; write .jsonl instead",
                file=str(path),
                field=name,
            ) from None
    pq.write_table(pa.table(arrays), tmp, row_group_size=PARQUET_ROW_GROUP, write_page_checksum=True)
