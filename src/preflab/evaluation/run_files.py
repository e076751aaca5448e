"""Reading what a run directory holds: ``metrics.jsonl``, ``config.yaml`` and ``eval/*.json``.

The training engine writes one JSON object per logged step to ``RUN_DIR/metrics.jsonl`` with keys
``step``, ``split`` (``"train"``/``"eval"``) and metric names (``loss``, ``rewards/margins``,
``rewards/accuracies``, ``kl``, ``tokens_per_s`` ...). A line that is not a JSON object, or lacks a step,
is skipped and *counted* (with its line number), so that a half-written last line of a live run does not
stop the report — the report says how many lines it skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .result import EvalResult

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
EVAL_DIR = "eval"
RM_EVAL_FILE = "rm_eval.json"


@dataclass
class MetricsSeries:
    """A metrics file as per-metric curves for the report: ``series[split][metric] = (steps, values)``, plus the
    lines that were skipped. (The training loop writes the file with :class:`preflab.training.observe.MetricsWriter`
    and reads it back, strictly, as rows with :func:`preflab.training.read_metrics`.)"""

    path: Path
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    n_records: int = 0

    def get(self, metric: str, split: str = "train") -> tuple[list[int], list[float]]:
        return self.series.get(split, {}).get(metric, ([], []))

    def metrics(self) -> list[str]:
        names: dict[str, None] = {}
        for per_split in self.series.values():
            names.update(dict.fromkeys(per_split))
        return list(names)

    def last(self, metric: str, split: str = "train") -> float | None:
        _, values = self.get(metric, split)
        return values[-1] if values else None


def read_metrics_series(path: str | Path) -> MetricsSeries:
    """Parse a ``metrics.jsonl`` file leniently into curves (see the module docstring): a bad line is skipped and
    counted, not an error; numbers only, non-finite values skipped."""
    path = Path(path)
    log = MetricsSeries(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read metrics ({exc.strerror})", file=str(path)) from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            log.skipped.append((lineno, f"not JSON ({exc.msg})"))
            continue
        if not isinstance(rec, dict):
            log.skipped.append((lineno, "not a JSON object"))
            continue
        step = rec.get("step")
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
            log.skipped.append((lineno, "no numeric 'step'"))
            continue
        split = str(rec.get("split", "train"))
        per_split = log.series.setdefault(split, {})
        log.n_records += 1
        for key, value in rec.items():
            if key in ("step", "split") or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value):
                continue
            steps, values = per_split.setdefault(key, ([], []))
            steps.append(int(step))
            values.append(float(value))
    return log


@dataclass
class RunContents:
    """What a run directory holds, and what is missing or unreadable (for the report to say)."""

    run_dir: Path
    metrics: MetricsSeries | None = None
    config_text: str | None = None
    evals: list[tuple[Path, EvalResult]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rm_eval: dict | None = None  # RM_EVAL_FILE: a reward model's held-out evaluation (preflab rm-eval)


def read_run(run_dir: str | Path) -> RunContents:
    """Collect metrics, config and evaluation results; note every missing or unreadable part."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError("run directory not found", file=str(run_dir))
    out = RunContents(run_dir)
    metrics_path = run_dir / METRICS_FILE
    if metrics_path.is_file():
        out.metrics = read_metrics_series(metrics_path)
        if out.metrics.skipped:
            first = ", ".join(f"line {n}: {why}" for n, why in out.metrics.skipped[:3])
            out.problems.append(f"{METRICS_FILE}: skipped {len(out.metrics.skipped)} unreadable line(s) ({first})")
    else:
        out.problems.append(f"no {METRICS_FILE}: training curves are not shown")
    config_path = run_dir / CONFIG_FILE
    if config_path.is_file():
        out.config_text = config_path.read_text(encoding="utf-8", errors="replace")
    else:
        out.problems.append(f"no {CONFIG_FILE}: the run's configuration is not shown")
    rm_path = run_dir / RM_EVAL_FILE
    if rm_path.is_file():
        try:
            rm = json.loads(rm_path.read_text(encoding="utf-8"))
            out.rm_eval = rm if isinstance(rm, dict) else None
        except (OSError, json.JSONDecodeError) as exc:
            out.problems.append(f"{RM_EVAL_FILE} skipped: {exc}")
    eval_dir = run_dir / EVAL_DIR
    files = sorted(eval_dir.glob("*.json")) if eval_dir.is_dir() else []
    if not files and out.rm_eval is None:
        out.problems.append(f"no {EVAL_DIR}/*.json: no evaluation results (run `preflab eval`)")
    for f in files:
        try:
            out.evals.append((f, EvalResult.load(f)))
        except DataError as err:
            where = f" (line {err.line})" if err.line is not None else ""
            out.problems.append(f"{EVAL_DIR}/{f.name} skipped: {err.message}{where}")
    return out
