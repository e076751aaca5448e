"""What a run reports: a metrics JSONL file, a rich progress bar, and Accelerate trackers.

``OUTPUT_DIR/metrics.jsonl`` holds one JSON object per logged step: ``{"step": 10, "split": "train",
"loss": …, "rewards/margins": …, "lr": …, "tokens_per_s": …}`` (``"split": "eval"`` for evaluations).
On resume the lines after the resumed step are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

from ..durable import append_line, atomic_write_text, fsync_file, storage_error
from ..errors import DataError, PreflabWarning


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


#: Seconds between two fsyncs of the metrics log (every row is flushed; :meth:`MetricsWriter.sync` forces one).
SYNC_EVERY_S = 10.0


class MetricsWriter:
    """Writes the main process's metrics to ``metrics.jsonl``, append-only (read back as rows by
    :func:`read_metrics`; as curves for the report by :func:`preflab.evaluation.run_files.read_metrics_series`).

    Each row is written in one flushed write (a ``kill -9`` loses no complete row); the file is fsync'd at
    most every :data:`SYNC_EVERY_S` seconds and whenever :meth:`sync` is called (before each checkpoint, so
    a checkpoint that survives a power cut has its rows too).

    On resume (``resume_step`` given) the rows after ``resume_step`` are dropped, as is a partial trailing
    line left by a killed run or a full disk (with a warning naming file and line); the file is rewritten
    atomically. A damaged line before the last is an error: those rows were complete once.
    """

    def __init__(self, path: Path, enabled: bool = True, resume_step: int | None = None):
        self.path, self.enabled = path, enabled
        self.synced_at = time.monotonic()
        if not enabled:
            return
        if resume_step is None:
            atomic_write_text(path, "")
        elif path.is_file():
            kept = [line for row, line in _complete_rows(path) if row["step"] <= resume_step]
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, "split": split, "time": round(time.time(), 3)}
        row.update({k: _plain(v) for k, v in metrics.items()})
        sync = time.monotonic() - self.synced_at >= SYNC_EVERY_S
        append_line(self.path, json.dumps(row), sync=sync)
        if sync:
            self.synced_at = time.monotonic()

    def sync(self) -> None:
        """Flush the log to stable storage now (a failure is a StorageError naming the file)."""
        if self.enabled and self.path.is_file():
            try:
                fsync_file(self.path)
            except OSError as exc:
                raise storage_error(self.path, exc) from None
            self.synced_at = time.monotonic()


def _parse_row(line: str) -> dict[str, Any]:
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    if isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int):
        raise ValueError("no integer 'step'")
    return row


def read_metrics_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row of a metrics.jsonl file, in order.

    A last line that does not parse (a write cut short by ``kill -9`` or a full disk) is dropped with a
    :class:`~preflab.errors.PreflabWarning` naming file and line; any other bad line raises
    :class:`~preflab.errors.DataError` naming file and line.
    """
    return [row for row, _ in _complete_rows(Path(path))]


def _complete_rows(path: Path) -> list[tuple[dict[str, Any], str]]:
    """(row, line as written) for every complete row of ``path``; see :func:`read_metrics_rows`."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read metrics ({exc.strerror or exc})", file=str(path)) from None
    numbered = [(i, line) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    rows = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            rows.append((_parse_row(line), line))
        except ValueError as exc:
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if k < len(numbered) - 1:
                raise DataError(
                    f"damaged metrics row ({reason}); only the last line of the log may be "
                    "partial: repair or delete this line",
                    file=str(path),
                    line=lineno,
                ) from None
            warnings.warn(
                f"{path}, line {lineno}: dropped a partial last metrics row ({reason}), left by an interrupted write",
                PreflabWarning,
                stacklevel=3,
            )
    return rows


def read_metrics(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file (optionally one split only); see :func:`read_metrics_rows`."""
    return [r for r in read_metrics_rows(path) if split is None or r.get("split") == split]


def _fmt(metrics: dict[str, Any], key: str, spec: str) -> str:
    value = metrics.get(key)
    return "-" if value is None else format(float(value), spec)


class ProgressBar:
    """Training progress (:class:`preflab.progress.Work`): step n/N, loss, reward margin, accuracy, tokens/s,
    elapsed and ETA; the margin and tokens/s only where the terminal is wider than 100 columns."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True, description: str = "train"):
        from ..progress import Work

        self.work = Work(description, total, start=start, enabled=enabled, unit="steps").__enter__()
        self.wide = self.work.console.width > 100

    def update(self, step: int, metrics: dict[str, Any]) -> None:
        info = f"loss {_fmt(metrics, 'loss', '.4f')}"
        if self.wide and "rewards/margins" in metrics:
            info += f"  margin {_fmt(metrics, 'rewards/margins', '.3f')}"
        if "rewards/accuracies" in metrics:
            info += f"  acc {_fmt(metrics, 'rewards/accuracies', '.2f')}"
        if self.wide and "tokens_per_s" in metrics:
            info += f"  {_fmt(metrics, 'tokens_per_s', ',.0f')} tok/s"
        self.work.update(step, info)

    def close(self) -> None:
        self.work.__exit__(None, None, None)


def flat_config(cfg: Any) -> dict[str, Any]:
    """A run config as flat ``section.key`` → scalar pairs (what trackers accept as hyperparameters)."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, (list, tuple)):
            out[prefix] = json.dumps(node)
        else:
            out[prefix] = node if isinstance(node, (int, float, str, bool)) else str(node)

    walk("", cfg.model_dump(mode="json"))
    return out
