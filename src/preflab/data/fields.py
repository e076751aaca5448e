"""Reading one field of one row, with a precise complaint when it is wrong.

Parsers call these getters; a getter either returns a clean Python value or raises :class:`BadRow`
naming the reason (a stable code counted in skip reports), the field and what was wrong. The loader
turns a :class:`BadRow` into a :class:`preflab.errors.DataError` with the file and line / row, or, with
``on_bad_row="skip"``, counts it and writes it to the report.

``typed=False`` marks rows whose values all arrived as strings (CSV): there, numbers and booleans are
parsed from text and an empty cell of an optional field means "absent". In typed sources (JSON, JSONL,
Parquet, ``datasets``) a string where a number belongs is a ``wrong_type`` error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .records import Text

# Stable reason codes (keys of LoadResult.skipped and of the skip report).
MALFORMED_JSON = "malformed_json"
UNDECODABLE = "undecodable_bytes"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
EMPTY = "empty_string"
IDENTICAL = "identical_responses"
PROB_RANGE = "probability_out_of_range"
NON_FINITE = "non_finite_number"
NEGATIVE_WEIGHT = "negative_weight"
WEIGHT_RANGE = "weight_out_of_range"
DUPLICATE_ID = "duplicate_id"
TOO_LONG = "too_long"
NO_SHARED_PROMPT = "no_shared_prompt"
LENGTH_MISMATCH = "length_mismatch"
TOO_FEW_RESPONSES = "too_few_responses"
BAD_MESSAGE = "bad_message"
TOO_DEEP = "too_deeply_nested"
INVALID_UNICODE = "invalid_unicode"
CORRUPT = "corrupt_data"
UNEXPECTED_FIELD = "unexpected_field"

#: Largest per-row weight: a loss scaled by more overflows float32 arithmetic long before it trains better.
MAX_WEIGHT = 1e6

_TRUE = {"true", "1", "yes", "y", "t", "desirable"}
_FALSE = {"false", "0", "no", "n", "f", "undesirable"}


class BadRow(Exception):
    """One row cannot be used: ``reason`` is a stable code, ``field`` the offending column."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.field = field
        super().__init__(message)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def is_absent(row: Mapping[str, Any], name: str, typed: bool = True) -> bool:
    """True when ``name`` is missing, null, or (untyped sources only) an empty cell."""
    value = row.get(name)
    return value is None or (not typed and value == "")


def first_present(row: Mapping[str, Any], names: tuple[str, ...], typed: bool = True) -> str | None:
    """The first of ``names`` present in ``row`` (see :func:`is_absent`), or None."""
    for name in names:
        if not is_absent(row, name, typed):
            return name
    return None


def require(row: Mapping[str, Any], name: str) -> Any:
    if row.get(name) is None:
        raise BadRow(MISSING_FIELD, "required field is missing" if name not in row else "field is null", name)
    return row[name]


def get_text(row: Mapping[str, Any], name: str) -> Text:
    """A required prompt/response: a non-empty string or a non-empty list of chat messages."""
    return check_text(require(row, name), name)


def check_text(value: Any, name: str) -> Text:
    """Validate a string or a chat message list (each ``{"role": str, "content": str, ...}``)."""
    if isinstance(value, str):
        if not value.strip():
            raise BadRow(EMPTY, "empty string" if not value else "string holds only whitespace", name)
        return value
    if isinstance(value, list | tuple):
        if not value:
            raise BadRow(EMPTY, "empty message list", name)
        messages = []
        for i, msg in enumerate(value):
            if not isinstance(msg, Mapping):
                raise BadRow(
                    WRONG_TYPE, f"message {i} is {_type_name(msg)}, expected an object with role and content", name
                )
            role, content = msg.get("role"), msg.get("content")
            if not isinstance(role, str) or not role:
                raise BadRow(BAD_MESSAGE, f"message {i} has no 'role' string", name)
            if not isinstance(content, str):
                raise BadRow(
                    BAD_MESSAGE, f"message {i} has 'content' of type {_type_name(content)}, expected a string", name
                )
            messages.append(dict(msg))
        if not any(m["content"].strip() for m in messages):
            raise BadRow(EMPTY, "every message's content is empty", name)
        return messages
    raise BadRow(WRONG_TYPE, f"expected a string or a list of chat messages, got {_type_name(value)}", name)


def _number(value: Any, name: str, typed: bool) -> float:
    if isinstance(value, bool):
        raise BadRow(WRONG_TYPE, "expected a number, got a boolean", name)
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:  # an integer beyond float's range (hundreds of digits)
            raise BadRow(NON_FINITE, f"integer with {len(str(value))} digits is too large for a float", name) from None
    elif hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalar
        return _number(value.item(), name, typed)
    elif isinstance(value, str) and not typed:
        try:
            out = float(value.strip())
        except ValueError:
            raise BadRow(WRONG_TYPE, f"expected a number, got {value!r}", name) from None
    else:
        raise BadRow(WRONG_TYPE, f"expected a number, got {_type_name(value)} {value!r:.40}", name)
    if not math.isfinite(out):
        raise BadRow(NON_FINITE, f"number is {out}", name)
    return out


def get_number(row: Mapping[str, Any], name: str, typed: bool = True, default: float | None = None) -> float | None:
    """An optional finite number (NaN and infinities are ``non_finite_number``)."""
    if is_absent(row, name, typed):
        return default
    return _number(row[name], name, typed)


def check_number(value: Any, name: str, typed: bool = True) -> float:
    return _number(value, name, typed)


def get_probability(row: Mapping[str, Any], name: str, typed: bool = True) -> float | None:
    """An optional probability in [0, 1]."""
    p = get_number(row, name, typed)
    if p is not None and not 0.0 <= p <= 1.0:
        raise BadRow(PROB_RANGE, f"probability {p} is outside [0, 1]", name)
    return p


def get_weight(row: Mapping[str, Any], name: str = "weight", typed: bool = True) -> float:
    """An optional example weight: finite, in [0, MAX_WEIGHT] (default 1.0)."""
    w = get_number(row, name, typed, default=1.0)
    assert w is not None
    return check_weight(w, name)


def check_weight(w: float, name: str = "weight") -> float:
    """``w`` is a usable example weight: finite and in [0, MAX_WEIGHT] (else :class:`BadRow`)."""
    if not math.isfinite(w):
        raise BadRow(NON_FINITE, f"weight is {w}", name)
    if w < 0:
        raise BadRow(NEGATIVE_WEIGHT, f"weight {w} is negative", name)
    if w > MAX_WEIGHT:
        raise BadRow(WEIGHT_RANGE, f"weight {w:g} is above {MAX_WEIGHT:g} (a loss scaled this much overflows)", name)
    return w


def get_bool(row: Mapping[str, Any], name: str, typed: bool = True) -> bool:
    """A required binary label: true/false (0/1 integers too; words like "yes"/"no" in CSV)."""
    value = require(row, name)
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
        if isinstance(value, bool):
            return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and not typed:
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise BadRow(
        WRONG_TYPE, f"expected a boolean label (true/false or 0/1), got {_type_name(value)} {value!r:.40}", name
    )


def get_str(row: Mapping[str, Any], name: str, typed: bool = True) -> str | None:
    """An optional short string (annotator, group)."""
    if is_absent(row, name, typed):
        return None
    value = row[name]
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BadRow(WRONG_TYPE, f"expected a string, got {_type_name(value)}", name)


def get_id(row: Mapping[str, Any], name: str = "id", typed: bool = True) -> str | None:
    """An optional id: a string or an integer (stored as its decimal string)."""
    value = get_str(row, name, typed)
    if value is not None and not value.strip():
        raise BadRow(EMPTY, "empty id", name)
    return value


def get_metadata(row: Mapping[str, Any], known: set[str], typed: bool = True) -> dict[str, Any]:
    """``row["metadata"]`` (an object) merged with every column no parser consumed.

    Unknown columns are kept, never dropped, so that ``save_records`` writes them back; a NaN or
    infinite number among them is a ``non_finite_number`` error.
    """
    meta: dict[str, Any] = {}
    if not is_absent(row, "metadata", typed):
        value = row["metadata"]
        if not isinstance(value, Mapping):
            raise BadRow(WRONG_TYPE, f"expected an object, got {_type_name(value)}", "metadata")
        meta.update(value)
    for key, value in row.items():
        if key in known or key == "metadata" or value is None or (not typed and value == ""):
            continue
        meta.setdefault(key, value)
    for key, value in meta.items():
        _check_finite(value, key)
    return meta


def _check_finite(value: Any, where: str) -> None:
    """No NaN / infinity hides in kept columns (a NaN ``score_chosen`` is as bad as a NaN score)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRow(NON_FINITE, f"number is {value}", where)
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")
