"""Completions files: each JSONL line holds one prompt, its sampled completions and their gold scores.

Written by ``preflab sample``, read by ``preflab annotate``. One line::

    {"id": "word_limit-0-3", "prompt": "...", "family": "word_limit",
     "task": {"id": ..., "family": ..., "prompt": ..., "params": {...}},
     "completions": ["...", "..."], "gold_scores": [0.5, 1.0],
     "num_tokens": [31, 12], "finish_reasons": ["stop", "stop"], "logprobs": [-40.1, -12.7]}

``family``/``task``/``gold_scores`` are absent for prompts that are not from a task suite; ``logprobs``
only when requested. Bad lines raise :class:`~preflab.errors.DataError` naming file, line and field.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..files import atomic_open
from .tasks import Task, task_from_dict


@dataclass
class PromptSamples:
    """One prompt and its completions (plus the task and gold scores when it came from a suite)."""

    prompt: Any
    completions: list[str]
    id: str | None = None
    task: Task | None = None
    gold_scores: list[float] | None = None
    num_tokens: list[int] | None = None
    finish_reasons: list[str] | None = None
    logprobs: list[float] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str | None:
        return self.task.family if self.task is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "prompt": self.prompt}
        if self.task is not None:
            out["family"] = self.task.family
            out["task"] = self.task.to_dict()
        out["completions"] = list(self.completions)
        for name in ("gold_scores", "num_tokens", "finish_reasons", "logprobs"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value)
        if self.metadata:
            out["metadata"] = self.metadata
        return out


def _check_list(row: dict, name: str, n: int, kind: type, where: dict) -> list | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        raise DataError(f"'{name}' must be a list with one entry per completion ({n})", field=name, **where)
    for v in value:
        ok = isinstance(v, kind) and not isinstance(v, bool) if kind is not str else isinstance(v, str)
        if kind is float:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        if not ok:
            raise DataError(f"'{name}' holds {v!r}, not a {kind.__name__}", field=name, **where)
    return value


def samples_from_dict(row: Any, *, file: str | None = None, line: int | None = None) -> PromptSamples:
    """Validate one completions-file row."""
    where = {"file": file, "line": line}
    if not isinstance(row, dict):
        raise DataError("a line must be a JSON object", **where)
    if "prompt" not in row:
        raise DataError("missing 'prompt'", field="prompt", **where)
    comps = row.get("completions")
    if not isinstance(comps, list) or not all(isinstance(c, str) for c in comps):
        raise DataError("'completions' must be a list of strings", field="completions", **where)
    task = None
    if row.get("task") is not None:
        if not isinstance(row["task"], dict):
            raise DataError("'task' must be an object", field="task", **where)
        task = task_from_dict(row["task"], file=file, line=line)
    gold = _check_list(row, "gold_scores", len(comps), float, where)
    return PromptSamples(
        prompt=row["prompt"],
        completions=comps,
        id=row.get("id"),
        task=task,
        gold_scores=[float(g) for g in gold] if gold is not None else None,
        num_tokens=_check_list(row, "num_tokens", len(comps), int, where),
        finish_reasons=_check_list(row, "finish_reasons", len(comps), str, where),
        logprobs=_check_list(row, "logprobs", len(comps), float, where),
        metadata=row.get("metadata") or {},
    )


def read_samples(path: str | Path) -> list[PromptSamples]:
    """Read a completions JSONL file (blank lines are allowed; anything else must parse)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("completions file not found", file=str(path))
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", file=str(path), line=lineno) from None
            rows.append(samples_from_dict(row, file=str(path), line=lineno))
    return rows


def write_samples(rows: Iterable[PromptSamples], path: str | Path) -> Path:
    """Write a completions JSONL file atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    with atomic_open(path, "w", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
    return path


PARALLEL_FIELDS = ("completions", "gold_scores", "num_tokens", "finish_reasons", "logprobs")


def usable_samples(samples: list[PromptSamples], counts: Counter, min_completions: int = 2) -> list[PromptSamples]:
    """The samples without the completions the data layer rejects (empty or whitespace-only), so that no pair,
    ranking or label is built from one; prompts left with fewer than ``min_completions`` are skipped. Both are
    counted in ``counts`` (``empty_completions_dropped``, ``prompts_with_under_<k>_completions_skipped``)."""
    out = []
    for s in samples:
        keep = [i for i, c in enumerate(s.completions) if c.strip()]
        if len(keep) < len(s.completions):
            counts["empty_completions_dropped"] += len(s.completions) - len(keep)
            kept = {
                name: [getattr(s, name)[i] for i in keep] for name in PARALLEL_FIELDS if getattr(s, name) is not None
            }
            s = replace(s, **kept)
        if len(keep) < min_completions:
            counts[f"prompts_with_under_{min_completions}_completions_skipped"] += 1
            continue
        out.append(s)
    return out
