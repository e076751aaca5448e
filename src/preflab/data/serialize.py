"""Records to plain dicts and JSONL files, in TRL's field names.

The layout written here is exactly what :func:`preflab.data.load_preferences` reads back, so a round
trip is lossless:

* :class:`PreferencePair` -> ``{"prompt", "chosen", "rejected"}`` (TRL's preference format, standard or
  conversational) plus ``id``, ``weight``, ``preference_prob``, ``annotator``, ``group``, ``metadata``;
* :class:`Unpaired` -> ``{"prompt", "completion", "label"}`` (TRL's unpaired/KTO format) plus the same
  optional fields;
* :class:`Ranking` -> ``{"prompt", "responses", "scores" | "ranks"}`` plus ``id``, ``annotator``,
  ``group``, ``metadata``;
* :class:`Demonstration` -> ``{"prompt", "completion"}`` (TRL's SFT prompt-completion format) plus ``id``,
  ``weight``, ``annotator``, ``group``, ``metadata``.

Optional fields are written only when they differ from their default (``None``, ``weight == 1.0``,
empty ``metadata``), so files of plain pairs stay plain TRL files. Files are written atomically
(a temporary file in the same folder, then a rename).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..errors import DataError
from .records import Demonstration, PreferencePair, Ranking, Unpaired

Record = PreferencePair | Ranking | Unpaired | Demonstration

#: The first fields of each record kind, in the order they are written.
CORE_FIELDS: dict[type, tuple[str, ...]] = {
    PreferencePair: ("prompt", "chosen", "rejected"),
    Ranking: ("prompt", "responses", "scores", "ranks"),
    Unpaired: ("prompt", "completion", "label"),
    Demonstration: ("prompt", "completion"),
}


def record_to_dict(record: Record) -> dict[str, Any]:
    """One record as a JSON-ready dict in TRL's field names (defaults left out, see module doc)."""
    kind = type(record)
    if kind not in CORE_FIELDS:
        raise TypeError(
            f"record_to_dict expects PreferencePair, Ranking, Unpaired or Demonstration, got {kind.__name__}"
        )
    core = CORE_FIELDS[kind]
    out: dict[str, Any] = {}
    for name in core:
        value = getattr(record, name)
        if value is not None or name not in ("scores", "ranks"):
            out[name] = _plain(value)
    for f in fields(record):
        if f.name in core:
            continue
        value = getattr(record, f.name)
        if f.name == "metadata":
            if value:
                out["metadata"] = _plain(value)
        elif f.name == "weight":
            if value != 1.0:
                out["weight"] = float(value)
        elif value is not None:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """Copy ``value`` into JSON types (tuples to lists, numpy scalars to Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, str | bytes):
        return value.item()  # numpy / torch scalars
    return value


def dumps_record(record: Record) -> str:
    """One JSONL line (no newline) for ``record``; non-finite floats are refused."""
    try:
        return json.dumps(record_to_dict(record), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / inf somewhere in the record
        raise DataError(f"record {getattr(record, 'id', None)!r} holds a non-finite number: {exc}") from None
    except TypeError as exc:
        raise DataError(f"record {getattr(record, 'id', None)!r} holds a value JSON cannot store: {exc}") from None


def save_records(records: Iterable[Record], path: str | Path) -> Path:
    """Write ``records`` as JSONL to ``path`` atomically, whatever its suffix; returns the path.

    Records of different kinds may not be mixed in one file (a loader could not tell the file's kind).
    :func:`preflab.data.writers.write_records` writes the format a path's suffix names instead.
    """
    from .writers import write_records  # writers builds on this module

    return write_records(records, path, format="jsonl")
