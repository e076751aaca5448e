"""One row as read from a source, and the checks every decoded JSON value must pass.

A reader yields a :class:`RawRow` per row: ``data`` when the row could be read, or ``error`` (a
:class:`~preflab.data.fields.BadRow`) when it could not, so the loader decides between failing and
skipping. :func:`value_problem` finds what Python's JSON decoder accepts but the rest of the package
cannot handle: nesting deeper than :data:`MAX_DEPTH` (recursive code downstream would overflow the
stack) and lone UTF-16 surrogates such as ``"\\ud800"`` (no UTF-8 encoder can write them back).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .fields import INVALID_UNICODE, MALFORMED_JSON, TOO_DEEP, BadRow

#: Deepest nesting of lists / objects a row may hold (chat rows need 3; metadata rarely more than 10).
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
#: A JSON ``\\uXXXX`` escape of a surrogate: the only way a lone one gets into text decoded from UTF-8.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


@dataclass
class RawRow:
    """One row as read: ``data`` (a dict) or ``error``; ``raw`` is what the skip report stores."""

    index: int
    line: int | None
    data: dict[str, Any] | None
    raw: Any
    error: BadRow | None = None


@dataclass
class RowSource:
    """A readable source of rows. ``typed`` is False when every value is text (CSV)."""

    name: str
    type: str
    rows: Callable[[], Iterator[RawRow]]
    typed: bool = True


def depth(value: Any) -> int:
    """Nesting depth of lists / dicts in ``value`` (a scalar is 0), computed without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level + 1)
        stack.extend((child, level + 1) for child in children)
    return deepest


def surrogate_path(value: Any, path: str) -> str | None:
    """Where in ``value`` (named from ``path``) a string or key holds a lone surrogate, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return where
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def value_problem(value: Any, field: str | None, *, escapes: bool = True, brackets: int | None = None) -> BadRow | None:
    """A :class:`BadRow` when ``value`` nests too deeply or holds a lone surrogate, else None.

    ``escapes=False`` skips the surrogate search (the source text had no surrogate escape);
    ``brackets`` (the count of ``[`` and ``{`` in the source text) skips the depth walk when it
    cannot exceed :data:`MAX_DEPTH`.
    """
    if (brackets is None or brackets > MAX_DEPTH) and depth(value) > MAX_DEPTH:
        if isinstance(value, Mapping):  # name the column that nests too deeply
            field = next((str(k) for k, v in value.items() if depth(v) >= MAX_DEPTH), field)
        return BadRow(TOO_DEEP, f"lists / objects nested more than {MAX_DEPTH} levels deep", field)
    if escapes:
        found = _surrogate(value, field)
        if found is not None:
            top, where = found
            return BadRow(
                INVALID_UNICODE,
                f"text at {where} holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode",
                top,
            )
    return None


def _surrogate(value: Any, field: str | None) -> tuple[str | None, str] | None:
    """(top-level field, full path) of the first lone surrogate in a row or value, or None."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            where = str(key) if isinstance(key, str) and _SURROGATE.search(key) else surrogate_path(child, str(key))
            if where is not None:
                return str(key), where
        return None
    where = surrogate_path(value, field or "value")
    return None if where is None else (field, where)


def decode_problem(exc: BaseException, field: str | None = None) -> BadRow:
    """The bad row for what ``json.loads`` raised besides a syntax error (deep nesting, a huge integer)."""
    if isinstance(exc, RecursionError):
        return BadRow(TOO_DEEP, "lists / objects nested too deeply for the JSON parser", field)
    limit = sys.get_int_max_str_digits()
    return BadRow(MALFORMED_JSON, f"an integer with more than {limit} digits (Python's limit for reading one)", field)
