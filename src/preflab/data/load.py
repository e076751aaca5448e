"""``load_preferences``: any supported source and format -> validated records of the kind asked for.

Validation covers malformed JSON lines, undecodable bytes, missing or mistyped fields, empty strings,
chosen identical to rejected, probabilities outside [0, 1], NaN / infinite numbers, negative weights,
duplicate ids and rows longer than ``max_chars``. With ``on_bad_row="error"`` (the default) the first
bad row raises :class:`DataError` naming the file, the line (JSONL, CSV) or row index (others) and the
field. With ``"skip"`` every bad row is counted by reason in :attr:`LoadResult.skipped`, described in
:attr:`LoadResult.findings`, kept in :attr:`LoadResult.bad_rows` and, given ``report_path``, written to
that JSONL report. Nothing is dropped without a trace.

:func:`stream_preferences` yields the same records one at a time (memory follows a row, not the
file); a file damaged beyond one row (a truncated ``.gz``, an over-long CSV cell) is a
:class:`DataError` naming it, under either policy (see :mod:`preflab.data.files`).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import new_file_mode
from .convert import KINDS, RULES, convert, kind_of
from .fields import DUPLICATE_ID, TOO_LONG, BadRow
from .formats import FORMATS, NATURAL_KIND, PARSERS, ParseContext, detect_format
from .records import Demonstration, PreferencePair, Text, Unpaired
from .serialize import Record
from .sources import RawRow, RowSource, open_source

ON_BAD_ROW = ("error", "skip")
#: How many rows format detection looks at before giving up.
DETECT_ROWS = 100


@dataclass
class LoadResult:
    """What :func:`load_preferences` read.

    ``n_rows`` counts every row read (good and bad); ``skipped`` counts skipped rows by reason;
    ``counts`` counts other events (``tied_pairs``, ``all_tied``, normalisations); ``findings`` holds
    one human-readable line per skipped row and per notable event.
    """

    records: list[Record]
    kind: str
    format: str
    source: str
    n_rows: int
    skipped: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    bad_rows: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        skipped = sum(self.skipped.values())
        return (
            f"LoadResult({len(self.records)} {self.kind} from {self.source!r}, format={self.format!r}, "
            f"rows={self.n_rows}, skipped={skipped}, findings={len(self.findings)})"
        )

    def write_report(self, path: str | Path) -> Path:
        """Write :attr:`bad_rows` as JSONL (an empty file when nothing was skipped); atomic."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        # backslashreplace writes a lone surrogate as its JSON escape, so the report stays valid JSON
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            for entry in self.bad_rows:
                fh.write(json.dumps(entry, ensure_ascii=False, default=repr) + "\n")
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would make the report private to its writer
        os.replace(tmp, path)
        return path


def text_chars(text: Text) -> int:
    """Characters of a string, or of all message contents of a conversation."""
    return len(text) if isinstance(text, str) else sum(len(m.get("content", "")) for m in text)


def check_length(record: Record, max_chars: int) -> None:
    """Each sequence a trainer will see (prompt + one response) must fit in ``max_chars`` characters."""
    prompt_len = text_chars(record.prompt)
    if isinstance(record, PreferencePair):
        sides = [("chosen", record.chosen), ("rejected", record.rejected)]
    elif isinstance(record, Unpaired | Demonstration):
        sides = [("completion", record.completion)]
    else:
        sides = [(f"responses[{i}]", r) for i, r in enumerate(record.responses)]
    if prompt_len > max_chars:
        raise BadRow(TOO_LONG, f"prompt has {prompt_len} characters, more than max_chars={max_chars}", "prompt")
    for name, text in sides:
        total = prompt_len + text_chars(text)
        if total > max_chars:
            raise BadRow(TOO_LONG, f"prompt + {name} has {total} characters, more than max_chars={max_chars}", name)


def _where(src: RowSource, raw: RawRow) -> dict[str, Any]:
    return {"line": raw.line} if raw.line is not None else {"row": raw.index}


def _validate_args(format: str | None, kind: str | None, on_bad_row: str, max_chars: int | None, rule: str) -> None:
    if format is not None and format not in FORMATS:
        raise DataError(f"unknown format '{format}'; expected one of {', '.join(FORMATS)}")
    if kind is not None and kind not in KINDS:
        raise DataError(f"unknown kind '{kind}'; expected one of {', '.join(KINDS)}")
    if on_bad_row not in ON_BAD_ROW:
        raise DataError(f"on_bad_row must be 'error' or 'skip', got '{on_bad_row}'")
    if max_chars is not None and max_chars <= 0:
        raise DataError(f"max_chars must be positive, got {max_chars}")
    if rule not in RULES:
        raise DataError(f"unknown pairing rule '{rule}'; expected one of {', '.join(RULES)}")


def load_preferences(
    source: Any,
    *,
    format: str | None = None,
    kind: str | None = None,
    on_bad_row: str = "error",
    max_chars: int | None = None,
    rule: str = "best-vs-worst",
    split: str = "train",
    report_path: str | Path | None = None,
    seed: int = 0,
    score_key: str | None = None,
) -> LoadResult:
    """Read preference data from ``source`` and return validated records.

    Args:
        source: a ``.jsonl``/``.json``/``.csv`` (each optionally ``.gz``) or ``.parquet`` file, a
            directory written by ``datasets.Dataset.save_to_disk``, a ``datasets.load_dataset`` name
            (``"name"`` or ``"name:config"``), a ``datasets.Dataset``, or a list of row dicts.
        format: force a layout (see :data:`preflab.data.formats.FORMATS`); None detects it from the
            first row whose columns match a layout.
        kind: ``"pairs"``, ``"rankings"`` or ``"unpaired"`` to convert to, or ``"demonstrations"`` (read
            prompt/completion rows as demonstrations: a ``label`` there is an error); None keeps the format's own.
        on_bad_row: ``"error"`` raises on the first bad row; ``"skip"`` skips and reports it.
        max_chars: longest allowed prompt + response, in characters (None = no limit).
        rule: how rankings become pairs (:data:`preflab.data.convert.RULES`).
        split: the split of a ``datasets`` directory or hub dataset.
        report_path: where to write skipped rows as JSONL (only with ``on_bad_row="skip"``).
        seed: seeds ``best-vs-random``.
        score_key: for rated completions, the completion field holding the score.
    """
    result, records = stream_preferences(
        source,
        format=format,
        kind=kind,
        on_bad_row=on_bad_row,
        max_chars=max_chars,
        rule=rule,
        split=split,
        seed=seed,
        score_key=score_key,
    )
    result.records = list(records)
    if report_path is not None and on_bad_row == "skip":
        result.write_report(report_path)
    return result


def stream_preferences(
    source: Any,
    *,
    format: str | None = None,
    kind: str | None = None,
    on_bad_row: str = "error",
    max_chars: int | None = None,
    rule: str = "best-vs-worst",
    split: str = "train",
    seed: int = 0,
    score_key: str | None = None,
) -> tuple[LoadResult, Iterator[Record]]:
    """:func:`load_preferences` as a stream: the result, and an iterator over the validated records.

    From JSONL, CSV and Parquet files memory follows one row (one Parquet batch), not the file, plus
    the bad rows kept for the report. The format is detected before this returns (so
    ``result.format`` and ``result.kind`` are set); the counts, findings and bad rows of ``result``
    fill as the iterator is consumed and are complete once it is exhausted. ``result.records`` stays
    empty.
    """
    _validate_args(format, kind, on_bad_row, max_chars, rule)
    src = open_source(source, split)
    ctx = ParseContext(typed=src.typed, score_key=score_key)
    rows = src.rows()
    fmt, rows = (format, rows) if format is not None else _detect(src, rows)
    if kind == "demonstrations" and fmt == "unpaired" and format is None:
        fmt = "prompt_completion"  # prompt/completion rows asked for as demonstrations: a label is refused
    result = LoadResult([], kind or NATURAL_KIND[fmt], fmt, src.name, 0)
    parse = _RowParser(fmt, ctx, max_chars)

    def records() -> Iterator[Record]:
        n_parsed = 0
        for raw in rows:
            result.n_rows += 1
            try:
                record = parse(raw)
            except BadRow as bad:
                _bad_row(result, src, raw, bad, on_bad_row)
                continue
            n_parsed += 1
            if kind_of(record) == result.kind and src.type != "memory":
                yield record  # parsed from a file: nothing else holds its values, no copy needed
            else:
                yield from convert([record], result.kind, rule=rule, seed=seed, counts=result.counts)
        result.counts.update(ctx.notes)
        _summarise(result, n_parsed, ctx.notes)

    return result, records()


class _RowParser:
    """One raw row -> a validated record, or :class:`BadRow`; remembers ids to refuse duplicates."""

    def __init__(self, fmt: str, ctx: ParseContext, max_chars: int | None) -> None:
        self.fmt, self.ctx, self.max_chars = fmt, ctx, max_chars
        self.seen_ids: dict[str, tuple[str, int]] = {}

    def __call__(self, raw: RawRow) -> Record:
        if raw.error is not None:
            raise raw.error
        assert raw.data is not None
        record = PARSERS[self.fmt](raw.data, self.ctx)
        if self.max_chars is not None:
            check_length(record, self.max_chars)
        if record.id is not None:
            if record.id in self.seen_ids:
                where, at = self.seen_ids[record.id]
                raise BadRow(DUPLICATE_ID, f"id {record.id!r} was already used at {where} {at}", "id")
            self.seen_ids[record.id] = ("line", raw.line) if raw.line is not None else ("row", raw.index)
        return record


def _detect(src: RowSource, rows: Iterator[RawRow], limit: int = DETECT_ROWS) -> tuple[str, Iterator[RawRow]]:
    """The format of the first row (among the first ``limit``) whose columns match one; rows are replayed.

    Rows read before that one (unreadable, or missing a column) are parsed with the detected format
    afterwards, so they fail with their own line and field rather than a vague format error.
    """
    seen: list[RawRow] = []
    for raw in rows:
        seen.append(raw)
        fmt = detect_format(raw.data) if raw.data is not None else None
        if fmt is not None:
            return fmt, itertools.chain(seen, rows)
        if len(seen) >= limit:
            break
    first = next((r for r in seen if r.data is not None), None)
    if first is None:
        if not seen:
            raise DataError("no rows to read", file=src.name)
        bad = seen[0].error
        why = f"; the first: {bad.message} [{bad.reason}]" if bad is not None else ""
        raise DataError(
            f"none of the first {len(seen)} rows could be read, so the format is unknown{why}",
            file=src.name,
            **_where(src, seen[0]),
        )
    raise DataError(
        f"cannot tell the format from the columns {sorted(first.data or {})}; expected one of: "
        + "; ".join(f"{k}: {v}" for k, v in FORMATS.items()),
        file=src.name,
        **_where(src, first),
    )


def _bad_row(result: LoadResult, src: RowSource, raw: RawRow, bad: BadRow, on_bad_row: str) -> None:
    where = _where(src, raw)
    if on_bad_row == "error":
        raise DataError(f"{bad.message} [{bad.reason}]", file=src.name, field=bad.field, **where) from None
    result.skipped[bad.reason] += 1
    entry = {
        "file": src.name,
        **where,
        "reason": bad.reason,
        "field": bad.field,
        "message": bad.message,
        "raw": raw.raw,
    }
    result.bad_rows.append(entry)
    msg = DataError(f"{bad.message} [{bad.reason}] (skipped)", file=src.name, field=bad.field, **where)
    result.findings.append(str(msg))


def _summarise(result: LoadResult, n_parsed: int, notes: Counter[str]) -> None:
    c = result.counts
    if c["tied_pairs"]:
        result.findings.append(
            f"{c['tied_pairs']} tied response pair(s) made no pair"
            + (f"; {c['all_tied']} ranking(s) had all responses tied and gave no pair" if c["all_tied"] else "")
        )
    for note, n in sorted(notes.items()):
        result.findings.append(f"{n} row(s): {note}")
    if result.n_rows and not n_parsed:
        result.findings.append(f"no usable rows: all {result.n_rows} rows were skipped")
