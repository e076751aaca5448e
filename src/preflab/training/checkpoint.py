"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

``OUTPUT_DIR/checkpoints/step-00000010/``::

    model.safetensors       trainable parameters by name (the adapters only, for LoRA), fp32
    optimizer.safetensors   optimizer state tensors, keys "<param index>.<name>" (exp_avg, exp_avg_sq, step)
    optimizer.json          optimizer param groups (lr, betas, weight decay, …)
    scheduler.json          learning-rate scheduler state
    rng-rank<R>.safetensors torch CPU (and CUDA) generator states of process R
    rng-rank<R>.json        Python and NumPy generator states of process R
    schedule.safetensors    the data schedule's tensors, when it has any (an iterative round's samples and
                            its reference log-probs)
    state.json              step, data-schedule position, counters; written last

The directory is assembled under a temporary name and renamed into place, so a checkpoint either
exists complete or not at all; only the ``keep_last`` newest are kept. ``latest_checkpoint`` returns
the newest complete one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

STEP_DIR = re.compile(r"^step-(\d+)$")
FORMAT = 1


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (those with a state.json), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for d in root.iterdir():
        m = STEP_DIR.match(d.name)
        if m and (d / "state.json").is_file():
            found.append((int(m.group(1)), d))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True), encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint file ({exc})", file=str(path)) from None


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


# ---------------------------------------------------------------- optimizer / scheduler / RNG


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and the JSON rest."""
    tensors, plain = {}, {}
    for idx, slot in state["state"].items():
        plain[str(idx)] = {}
        for name, value in slot.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value
            else:
                plain[str(idx)][name] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------- save / load


def save_checkpoint(root: Path, step: int, *, model_state: dict[str, torch.Tensor], optimizer: Any,
                    scheduler: Any, state: dict[str, Any], rank: int = 0, is_main: bool = True,
                    barrier: Any = None, keep_last: int = 2,
                    schedule_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint ``step`` atomically (every process calls this; ``barrier()`` syncs them).
    ``schedule_tensors`` (the same on every process) go to ``schedule.safetensors``."""
    barrier = barrier or (lambda: None)
    final = step_dir(root, step)
    tmp = root / f".tmp-step-{step:08d}"
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier()
    rng_tensors, rng_plain = rng_state()
    save_file(_contiguous(rng_tensors), str(tmp / f"rng-rank{rank}.safetensors"))
    _write_json(tmp / f"rng-rank{rank}.json", rng_plain)
    if is_main:
        save_file(_contiguous({k: v.float() if v.is_floating_point() else v for k, v in model_state.items()}),
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        opt_tensors, opt_plain = optimizer_to_files(optimizer.state_dict())
        save_file(_contiguous(opt_tensors), str(tmp / "optimizer.safetensors"))
        _write_json(tmp / "optimizer.json", opt_plain)
        _write_json(tmp / "scheduler.json", scheduler.state_dict())
        if schedule_tensors:
            save_file(_contiguous(schedule_tensors), str(tmp / "schedule.safetensors"))
    barrier()
    if is_main:
        _write_json(tmp / "state.json", dict(state, step=step, format=FORMAT))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def read_state(path: Path) -> dict[str, Any]:
    state = _read_json(path / "state.json")
    if state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint format {state.get('format')} is not {FORMAT}", file=str(path))
    return state


def load_checkpoint(path: Path, *, optimizer: Any, scheduler: Any, rank: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer, scheduler and this process's RNG; return (model tensors, state dict). The schedule's
    tensors, when the checkpoint has them, are ``state["schedule"]["tensors"]``."""
    state = read_state(path)
    for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json"):
        if not (path / name).is_file():
            raise CheckpointError(f"incomplete checkpoint: {name} is missing", file=str(path))
    try:
        model_state = load_file(str(path / "model.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        if (path / "schedule.safetensors").is_file():
            state.setdefault("schedule", {})["tensors"] = load_file(str(path / "schedule.safetensors"))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"damaged safetensors file ({exc})", file=str(path)) from None
    optimizer.load_state_dict(optimizer_from_files(opt_tensors, _read_json(path / "optimizer.json")))
    scheduler.load_state_dict(_read_json(path / "scheduler.json"))
    rng_file = path / f"rng-rank{rank}.safetensors"
    if rng_file.is_file():
        set_rng_state(load_file(str(rng_file)), _read_json(path / f"rng-rank{rank}.json"))
    return model_state, state
