"""Where a run starts inside the training loop: a fork's weights, the latest intact checkpoint of the run being
resumed (model, optimizer, learning-rate schedule, data schedule, step and token count; damaged newer
checkpoints are set aside with a warning), or step 0. :mod:`preflab.training.rundir` has already decided, before
anything was written, whether the output directory's run is resumed, forked or refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..errors import CheckpointError, PreflabWarning, TrainingError
from . import checkpoint as ckpt
from .build import Parts
from .rundir import fork_weights


@dataclass(frozen=True)
class Resumed:
    """The checkpoint a run continues from, and the optimizer step and token count it had reached."""

    step: int
    tokens: int
    checkpoint: Path


def restore_run(cfg: RunConfig, parts: Parts, ckpt_root: Path) -> Resumed | None:
    """Load a fork's weights (then None: step 0, a fresh optimizer and schedule), or with ``train.resume`` the
    latest intact checkpoint under ``ckpt_root`` into ``parts`` (the :class:`Resumed` point), or nothing (None).
    Checkpoints in ``ckpt_root`` without ``train.resume`` are a :class:`TrainingError`; no intact one, a
    :class:`CheckpointError`."""
    acc = parts.accelerator
    start = parts.start
    if start is not None and start.fork_from is not None:
        _load_weights(parts, start.fork_from, fork_weights(start.fork_from))
        acc.print(f"forked from {start.fork_from}: its weights, a fresh optimizer and schedule, step 0")
        return None
    if not cfg.train.resume:
        if ckpt.step_dirs(ckpt_root):
            raise TrainingError(
                f"{ckpt_root} already holds checkpoints; set train.resume: true to "
                "continue that run, or choose another output_dir"
            )
        return None
    if not ckpt.step_dirs(ckpt_root):
        if cfg.train.resume is True:
            acc.print(f"resume: no checkpoint in {ckpt_root}; starting from step 0")
        return None
    latest, failed = ckpt.find_intact(ckpt_root)
    if latest is None:
        reasons = "; ".join(f"{path.name}: {why}" for path, why in failed)
        raise CheckpointError(
            f"no intact checkpoint to resume from ({reasons}); the metrics log is kept: "
            "restore a checkpoint, or remove this directory to start over",
            file=str(ckpt_root),
        )
    model_state, state = ckpt.load_checkpoint(
        latest,
        optimizer=parts.optimizer.optimizer,
        verify=False,
        scheduler=parts.lr_scheduler,
        rank=acc.process_index,
    )
    if state.get("objective") != cfg.objective.name:
        raise TrainingError(
            f"checkpoint {latest} was trained with objective '{state.get('objective')}', not '{cfg.objective.name}'"
        )
    _load_weights(parts, latest, model_state)
    parts.schedule.load_state_dict(state["schedule"])
    resumed = Resumed(int(state["step"]), int(state.get("tokens", 0)), latest)
    _set_aside(acc, failed, latest)
    acc.print(f"resumed from {latest} (step {resumed.step})")
    return resumed


def _load_weights(parts: Parts, source: Path, model_state: dict[str, torch.Tensor]) -> None:
    from ..models.policy import load_trainable_state_dict

    device = parts.accelerator.device
    try:
        load_trainable_state_dict(parts.policy, {k: v.to(device) for k, v in model_state.items()})
    except KeyError as exc:
        raise TrainingError(f"checkpoint {source}: {exc.args[0]}") from None


def _set_aside(acc: Any, failed: list[tuple[Path, str]], used: Path) -> None:
    """Rename the damaged checkpoints newer than ``used`` (so pruning never keeps them over intact ones)."""
    acc.wait_for_everyone()  # every process has chosen `used` before the names change
    if not acc.is_main_process:
        return
    for path, why in failed:
        try:
            moved = f"was set aside as {ckpt.set_aside(path).name}"
        except OSError as exc:
            moved = f"could not be set aside ({exc.strerror})"
        warnings.warn(
            f"checkpoint {path} is unusable: {why}; it {moved}, and the run falls back to the "
            f"previous intact checkpoint {used.name}",
            PreflabWarning,
            stacklevel=2,
        )
