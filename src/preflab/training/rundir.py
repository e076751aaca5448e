"""Starting a run in its output directory: what is there is checked against the run about to start.

``train.resume`` decides what happens when ``OUTPUT_DIR/checkpoints`` holds a checkpoint:

* ``false``: refused (a stopped run is never overwritten silently);
* ``true``: continue from the latest checkpoint, unless the directory's provenance
  (:mod:`preflab.training.provenance`) differs from this run's: then a one-line error names the differing
  keys (``train.lr: 0.0005 -> 0.001``) and nothing in the directory is touched;
* ``fork``: the old run is set aside under ``OUTPUT_DIR/history/`` and a new run starts from its latest
  checkpoint's weights (fresh optimizer, schedule and step count), recorded as ``forked_from``;
* ``auto``: continue when the provenance matches, else set the old run aside and train afresh (what the
  quickstart's train stage does when its inputs changed).

All of it happens before anything is written to the directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError, TrainingError
from ..files import check_output_dir
from . import checkpoint as ckpt
from .provenance import (
    PROVENANCE_FILE,
    build_provenance,
    code_version,
    differences,
    now,
    read_provenance,
    result_config,
)

HISTORY_DIR = "history"
#: What a training run writes into its directory (set aside together; data reports and locks stay).
RUN_FILES = (
    "checkpoints",
    "final",
    "metrics.jsonl",
    "config.yaml",
    PROVENANCE_FILE,
    "train_summary.json",
    "reference_logprobs.safetensors",
    "eval",
    "report",
)
MAX_DIFFS_SHOWN = 6


@dataclass
class RunStart:
    """The outcome of :func:`start_run`: the provenance to write, and the checkpoint a fork starts from."""

    provenance: dict[str, Any]
    fork_from: Path | None = None
    set_aside: Path | None = None


def start_run(
    cfg: Any,
    records: Any,
    eval_records: Any = None,
    model: Any = None,
    judge: Any = None,
    *,
    is_main: bool = True,
    barrier: Callable[[], None] | None = None,
    log: Callable[[str], None] = print,
) -> RunStart:
    """Check ``cfg.output_dir`` against the run about to start (see the module doc); every process calls it."""
    out = check_output_dir(cfg.output_dir)
    root = out / "checkpoints"
    latest = ckpt.latest_checkpoint(root)
    known = read_provenance(out)
    doc = build_provenance(cfg, records, eval_records, model, judge, known=known)
    mode = cfg.train.resume
    if latest is None:
        if mode == "fork":
            raise ConfigError(
                f"resume: fork starts a new run from a checkpoint, and {root} holds none", field="train.resume"
            )
        return RunStart(_with_session(doc, 0))
    if mode is False:
        raise TrainingError(
            f"{root} already holds checkpoints; set train.resume: true to continue that run, "
            "train.resume: fork to start a new run from its weights, or choose another output_dir"
        )
    old = known or _from_config_yaml(out)
    diffs = differences(old, doc) if old else []
    step = ckpt.list_checkpoints(root)[-1][0]
    if mode == "fork" or (mode == "auto" and diffs):
        target = _history_name(out, old)
        barrier = barrier or (lambda: None)
        barrier()  # every process has read the directory before the main one moves things
        if is_main:
            set_aside(out, target)
        barrier()
        if mode == "auto":
            log(f"the run in {out} had other settings ({_summary(diffs)}); it was moved to {target}, training afresh")
            return RunStart(_with_session(doc, 0), set_aside=target)
        doc["forked_from"] = {
            "run": str(target),
            "checkpoint": str(target / "checkpoints" / latest.name),
            "step": step,
            "fingerprint": (old or {}).get("fingerprint"),
            "changed": diffs,
        }
        log(f"forking: the run in {out} was moved to {target}; a new run starts from its step-{step} weights")
        return RunStart(_with_session(doc, 0), fork_from=target / "checkpoints" / latest.name, set_aside=target)
    if diffs:
        raise ConfigError(
            f"cannot resume: {out} holds a run made with other settings ({_summary(diffs)}); "
            f"train.resume: fork (preflab train --fork) starts a new run from its step-{step} weights, "
            "or choose another output_dir"
        )
    if old is None:
        log(f"note: {out} has no {PROVENANCE_FILE} or config.yaml; resuming without checking its settings")
    _note_code_change(known, log)
    for key in ("created", "forked_from", "sessions"):
        if known and key in known:
            doc[key] = known[key]
    return RunStart(_with_session(doc, step))


def _summary(diffs: list[str]) -> str:
    more = len(diffs) - MAX_DIFFS_SHOWN
    return "; ".join(diffs[:MAX_DIFFS_SHOWN]) + (f"; and {more} more" if more > 0 else "")


def _with_session(doc: dict[str, Any], from_step: int) -> dict[str, Any]:
    doc["sessions"] = [*doc.get("sessions", []), {"started": now(), "from_step": from_step, "code": code_version()}]
    return doc


def _note_code_change(known: dict[str, Any] | None, log: Callable[[str], None]) -> None:
    sessions = (known or {}).get("sessions") or []
    before = sessions[-1].get("code") if sessions else None
    current = code_version()
    if before and {k: before.get(k) for k in ("version", "commit")} != {
        k: current.get(k) for k in ("version", "commit")
    }:
        log(
            f"note: the run was last trained with preflab {before.get('version')} (commit {before.get('commit')}); "
            f"continuing with {current.get('version')} (commit {current.get('commit')})"
        )


def _from_config_yaml(out: Path) -> dict[str, Any] | None:
    """A run written before provenance existed: its config.yaml is all there is to compare."""
    from ..config import load_config

    if not (out / "config.yaml").is_file():
        return None
    try:
        return {"config": result_config(load_config(out / "config.yaml"))}
    except ConfigError:
        return None


def _history_name(out: Path, old: dict[str, Any] | None) -> Path:
    """``OUTPUT_DIR/history/run-<fingerprint>`` (``-2``, ``-3``... when taken); the same on every process."""
    base = out / HISTORY_DIR / f"run-{(old or {}).get('fingerprint') or 'unknown'}"
    target, n = base, 1
    while target.exists():
        n += 1
        target = base.with_name(f"{base.name}-{n}")
    return target


def set_aside(out: Path, target: Path) -> Path:
    """Move the run's own files (:data:`RUN_FILES`) from ``out`` into ``target``."""
    target.mkdir(parents=True)
    for name in RUN_FILES:
        if (out / name).exists():
            shutil.move(str(out / name), str(target / name))
    return target


def fork_weights(checkpoint: Path) -> dict[str, Any]:
    """The trainable weights stored in a checkpoint (what a forked run starts from)."""
    from safetensors.torch import load_file

    path = checkpoint / "model.safetensors"
    if not path.is_file():
        raise CheckpointError("cannot fork: the checkpoint has no model.safetensors", file=str(checkpoint))
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"cannot fork: damaged model.safetensors ({exc})", file=str(checkpoint)) from None
