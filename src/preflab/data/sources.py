"""Where rows come from: JSONL, JSON, CSV, Parquet, ``datasets`` directories, hub names, in-memory rows.

:func:`open_source` turns a source into a :class:`RowSource` whose :meth:`RowSource.rows` yields one
:class:`RawRow` per row, in file order. A row that cannot be read at all (a malformed JSON line,
undecodable bytes, a line holding a list instead of an object) is yielded with ``error`` set instead of
raising, so that the loader decides between failing and skipping. Problems with the file as a whole
(missing file, invalid JSON document, unreachable hub dataset) raise :class:`DataError` at once. The
file readers, and what each does with a damaged file, are in :mod:`preflab.data.files`.

Locations: line-oriented files (JSONL, CSV) report 1-based line numbers; the others 0-based row indexes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import DataError
from .fields import NOT_AN_OBJECT, BadRow
from .files import csv_rows, json_rows, jsonl_rows, parquet_rows
from .rows import RawRow, RowSource

__all__ = ["SOURCE_TYPES", "RawRow", "RowSource", "open_source", "source_type"]

SOURCE_TYPES = ("jsonl", "json", "csv", "parquet", "datasets", "hub", "memory")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def source_type(path: Path) -> str | None:
    """The reader for a path, from its suffix (``.gz`` allowed on JSONL/JSON/CSV), or None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and _SUFFIXES.get(suffixes[-1]) == "parquet":
            return None  # Parquet compresses inside the file
    return _SUFFIXES.get(suffixes[-1]) if suffixes else None


def open_source(source: Any, split: str = "train") -> RowSource:
    """Resolve ``source`` (path, hub name, ``datasets.Dataset`` or an iterable of dicts) to a RowSource."""
    if not isinstance(source, str | Path):
        return _memory(source, split)
    path = Path(source).expanduser()
    if path.is_dir():
        return _datasets_dir(path, split)
    kind = source_type(path)
    if path.is_file():
        if kind is None:
            raise DataError(
                f"unknown file type '{''.join(path.suffixes) or '(none)'}'; expected .jsonl, .json, .csv or "
                ".parquet (optionally .gz), or a directory written by datasets' save_to_disk",
                file=str(path),
            )
        if kind == "json":
            return RowSource(str(path), kind, lambda: json_rows(path, split))
        reader = {"jsonl": jsonl_rows, "csv": csv_rows, "parquet": parquet_rows}[kind]
        return RowSource(str(path), kind, lambda: reader(path), typed=kind != "csv")
    if kind is not None or str(source).startswith((".", "/", "~")):
        raise DataError("file not found", file=str(path))
    return _hub(str(source), split)


def _iter_dataset(ds: Iterable[Any]) -> Iterator[RawRow]:
    for i, item in enumerate(ds):
        if isinstance(item, Mapping):
            yield RawRow(i, None, dict(item), item)
        else:
            yield RawRow(i, None, None, item, BadRow(NOT_AN_OBJECT, f"expected a mapping, got {type(item).__name__}"))


def _iter_arrow_dataset(ds: Iterable[Any], name: str) -> Iterator[RawRow]:
    """Rows of a ``datasets`` dataset; damaged Arrow data on disk is a DataError naming the row."""
    import pyarrow as pa

    done = 0
    try:
        for raw in _iter_dataset(ds):
            yield raw
            done += 1
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read the saved dataset: {reason}", file=name, row=done) from None


def _pick_split(ds: Any, split: str, name: str) -> Any:
    from datasets import DatasetDict, IterableDatasetDict

    if isinstance(ds, DatasetDict | IterableDatasetDict):
        if split not in ds:
            raise DataError(f"split '{split}' not found; available: {', '.join(ds)}", file=name)
        return ds[split]
    return ds


def _datasets_dir(path: Path, split: str) -> RowSource:
    if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        raise DataError(
            "a directory must be one written by datasets' save_to_disk (no dataset_info.json "
            "or dataset_dict.json found)",
            file=str(path),
        )
    from datasets import load_from_disk

    try:
        ds = _pick_split(load_from_disk(str(path)), split, str(path))
    except DataError:
        raise
    except Exception as exc:  # datasets raises several types for a damaged directory
        raise DataError(f"cannot load the saved dataset: {exc}", file=str(path)) from None
    return RowSource(str(path), "datasets", lambda: _iter_arrow_dataset(ds, str(path)))


def _hub(name: str, split: str) -> RowSource:
    """A ``datasets.load_dataset`` name; ``name:config`` picks a configuration."""
    import datasets

    repo, _, config = name.partition(":")
    _check_hub_reachable(name)
    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except Exception as exc:  # offline, unknown name, missing split: all user-facing
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"not a local file or directory, and datasets.load_dataset('{repo}'"
            f"{f', {config!r}' if config else ''}, split='{split}') failed: {reason}",
            file=name,
        ) from None
    return RowSource(name, "hub", lambda: _iter_arrow_dataset(ds, name))


def _check_hub_reachable(name: str) -> None:
    """Fail in seconds, not after minutes of retries, when the hub cannot be reached.

    With ``HF_HUB_OFFLINE=1`` the check is skipped and ``datasets`` reads its local cache.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        raise DataError(
            f"not a local file or directory, and the datasets hub ({host}) is unreachable: {exc} "
            "(set HF_HUB_OFFLINE=1 to read a cached copy)",
            file=name,
        ) from None


def _memory(source: Any, split: str) -> RowSource:
    """A ``datasets.Dataset`` / ``DatasetDict``, or any iterable of dicts (e.g. a list of rows)."""
    if isinstance(source, Mapping) and not hasattr(source, "column_names"):
        raise DataError("pass a list of row dicts, a datasets.Dataset, or a path; got a single mapping")
    if hasattr(source, "column_names"):
        source = _pick_split(source, split, "<dataset>")
    if not isinstance(source, Iterable) or isinstance(source, bytes):
        raise DataError(f"cannot read rows from a {type(source).__name__}")
    return RowSource("<memory>", "memory", lambda: _iter_dataset(source))
