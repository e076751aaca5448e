"""Training: one loop (Accelerate) fed by data schedules — offline datasets, online sampling + judging, and
iterative rounds (sample from π_t, judge, train against π_t).

``train(cfg, *, judge=None, records=None, ...) -> TrainResult`` is the entry point; the heavy imports
(torch, transformers, accelerate) happen on first use, so importing the config sections stays cheap.
"""

from __future__ import annotations

from typing import Any

from .config import (
    IterativeSection,
    LoraSection,
    ObjectiveConfig,
    OnlineSection,
    ReferenceSection,
    RewardSection,
    TrainConfig,
    make_params,
)

_LAZY = {
    "train": "loop",
    "TrainResult": "loop",
    "OfflineSchedule": "schedule",
    "OnlineSchedule": "online",
    "IterativeSchedule": "iterative",
    "Schedule": "schedule",
    "read_metrics": "observe",
    "latest_checkpoint": "checkpoint",
}

__all__ = [
    "IterativeSection",
    "LoraSection",
    "ObjectiveConfig",
    "OnlineSection",
    "ReferenceSection",
    "RewardSection",
    "TrainConfig",
    "make_params",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
