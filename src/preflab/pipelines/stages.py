"""Resumable stages: each writes its artefacts, then records a fingerprint of its inputs.

A rerun with the same config reuses every finished stage whose fingerprint (the stage's own config
plus its upstream fingerprints) is unchanged; a changed config redoes that stage and everything after.
The manifest is written atomically, after the stage's artefacts, so Ctrl-C never marks a half-written
stage as done. After each stage the allocator hands what the stage freed back to the kernel
(:func:`preflab.launch.release_free_memory`), so a stage does not start on what the stages before it left
cached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..files import atomic_write_text
from ..launch import release_free_memory

__all__ = ["MANIFEST", "Stages", "atomic_write_text", "fingerprint"]

MANIFEST = "stages.json"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class Stages:
    """The run directory's stage manifest: ``{stage: {"fingerprint", "seconds", "finished_at", "info"}}``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / MANIFEST
        self.state: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self.state = json.loads(self.path.read_text(encoding="utf-8"))
        self.timings: dict[str, float] = {}

    def done(self, name: str, fp: str) -> bool:
        entry = self.state.get(name)
        return bool(entry) and entry.get("fingerprint") == fp

    def run(self, name: str, fp: str, fn: Callable[[], dict[str, Any] | None], *, log=print) -> dict[str, Any]:
        """Run ``fn`` unless stage ``name`` already finished with fingerprint ``fp``; return its info."""
        if self.done(name, fp):
            log(f"[{name}] reused from an earlier run (same config)")
            self.timings[name] = 0.0
            return self.state[name].get("info", {})
        t0 = time.perf_counter()
        info = fn() or {}
        seconds = time.perf_counter() - t0
        release_free_memory()
        self.timings[name] = seconds
        self.state[name] = {
            "fingerprint": fp,
            "seconds": round(seconds, 2),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "info": info,
        }
        atomic_write_text(self.path, json.dumps(self.state, indent=2))
        return info
