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
    state.json              step, data-schedule position, counters, and the sha256 of every other file
                            (``files``) and of itself (``checksum``); written last

The directory is assembled under a temporary name, every file fsync'd, and renamed into place, so a
checkpoint either exists complete or not at all; only the ``keep_last`` newest are kept. A failed write
(disk full) removes the temporary directory and raises :class:`~preflab.errors.StorageError`; the
checkpoints already on disk stay as they were. On resume :func:`find_intact` verifies every file
against its checksum (every file of the list, the RNG files included, is required), newest first, and
returns the newest intact checkpoint with the reasons the newer ones failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..durable import fsync_dir, fsync_file, storage_error
from ..errors import CheckpointError, PreflabWarning
from ..files import widen_modes

STEP_DIR = re.compile(r"^step-(\d+)$")
FORMAT = 2  # 2: per-file sha256 in state.json
LEGACY_FORMATS = (1,)  # readable, without checksums
INVALID_SUFFIX = ".invalid"


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


def step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-N`` directory under ``root``, complete or not, oldest first."""
    if not root.is_dir():
        return []
    return sorted((int(m.group(1)), d) for d in root.iterdir() if (m := STEP_DIR.match(d.name)) and d.is_dir())


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def _written(path: Path, write: Callable[[], Any]) -> None:
    """Run ``write`` (which creates ``path``) and fsync the file; a failure is a StorageError naming it."""
    try:
        write()
        fsync_file(path)
    except (OSError, SafetensorError) as exc:
        raise storage_error(path, exc, "cannot write checkpoint file") from None


def _write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, sort_keys=True, allow_nan=True)
    _written(path, lambda: path.write_text(text, encoding="utf-8"))


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    def write() -> None:
        save_file(_contiguous(tensors), str(path), metadata=metadata)
        widen_modes(path)  # safetensors writes through a private (0600) temporary file

    _written(path, write)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _state_digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()


def _sealed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as JSON will read it back, plus the checksum of its own content."""
    state = json.loads(json.dumps(state, allow_nan=True))
    return dict(state, checksum=_state_digest(state))


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
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
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


def save_checkpoint(
    root: Path,
    step: int,
    *,
    model_state: dict[str, torch.Tensor],
    optimizer: Any,
    scheduler: Any,
    state: dict[str, Any],
    rank: int = 0,
    is_main: bool = True,
    barrier: Any = None,
    keep_last: int = 2,
    schedule_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically (every process calls this; ``barrier()`` syncs them).
    ``schedule_tensors`` (the same on every process) go to ``schedule.safetensors``."""
    barrier = barrier or (lambda: None)
    final = step_dir(root, step)
    tmp = root / f".tmp-step-{step:08d}"
    try:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                tmp.mkdir(parents=True)
            except OSError as exc:
                raise storage_error(tmp, exc, "cannot write checkpoint") from None
        barrier()
        rng_tensors, rng_plain = rng_state()
        _save_tensors(tmp / f"rng-rank{rank}.safetensors", rng_tensors)
        _write_json(tmp / f"rng-rank{rank}.json", rng_plain)
        if is_main:
            _save_tensors(
                tmp / "model.safetensors",
                {k: v.float() if v.is_floating_point() else v for k, v in model_state.items()},
                {"format": "pt"},
            )
            opt_tensors, opt_plain = optimizer_to_files(optimizer.state_dict())
            _save_tensors(tmp / "optimizer.safetensors", opt_tensors)
            _write_json(tmp / "optimizer.json", opt_plain)
            _write_json(tmp / "scheduler.json", scheduler.state_dict())
            if schedule_tensors:
                _save_tensors(tmp / "schedule.safetensors", schedule_tensors)
        barrier()
        if is_main:
            _seal_and_publish(tmp, final, dict(state, step=step, format=FORMAT))
    except BaseException:
        if is_main:  # a full disk: free what the half-written checkpoint took; older ones are untouched
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if is_main:
        for _, old in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _seal_and_publish(tmp: Path, final: Path, state: dict[str, Any]) -> None:
    """Record every file's sha256 in state.json (written last), then rename ``tmp`` into place durably."""
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    _write_json(tmp / "state.json", _sealed(dict(state, files=files)))
    fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError as exc:
        raise storage_error(final, exc, "cannot publish checkpoint") from None
    fsync_dir(final.parent)


def required_files(state: dict[str, Any]) -> list[str]:
    """The files a checkpoint written by ``state["world_size"]`` processes must hold."""
    names = ["model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json"]
    for r in range(int(state.get("world_size", 1))):
        names += [f"rng-rank{r}.safetensors", f"rng-rank{r}.json"]
    return names


def check_checkpoint(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be used (a missing, damaged or truncated file), or None if intact."""
    if not (path / "state.json").is_file():
        return "no state.json (an interrupted write)"
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"state.json is unreadable ({exc})"
    if not isinstance(state, dict):
        return "state.json is not a JSON object"
    fmt = state.get("format")
    if fmt not in (FORMAT, *LEGACY_FORMATS):
        return f"checkpoint format {fmt} is not {FORMAT}"
    if fmt == FORMAT and state.get("checksum") != _state_digest(state):
        return "state.json does not match its checksum (damaged)"
    files = state.get("files", {}) if fmt == FORMAT else {}
    try:
        names = required_files(state)
    except (TypeError, ValueError):
        return "state.json has no valid world_size"
    for name in names:
        if not (path / name).is_file():
            return f"{name} is missing"
        if fmt == FORMAT and name not in files:
            return f"{name} has no checksum in state.json"
    for name, digest in files.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if sha256_file(path / name) != digest:
            return f"{name} does not match its checksum (damaged or truncated)"
    return None


def find_intact(root: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest intact checkpoint under ``root`` (or None) and, for each newer step directory, why it failed."""
    failed: list[tuple[Path, str]] = []
    for _, path in reversed(step_dirs(root)):
        reason = check_checkpoint(path)
        if reason is None:
            return path, failed
        failed.append((path, reason))
    return None, failed


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint to ``step-N.invalid`` (kept for inspection, never loaded or pruned)."""
    target = path.with_name(path.name + INVALID_SUFFIX)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def read_state(path: Path) -> dict[str, Any]:
    state = _read_json(path / "state.json")
    if not isinstance(state, dict) or state.get("format") not in (FORMAT, *LEGACY_FORMATS):
        fmt = state.get("format") if isinstance(state, dict) else None
        raise CheckpointError(f"checkpoint format {fmt} is not {FORMAT}", file=str(path))
    return state


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"damaged safetensors file ({exc})", file=str(path)) from None


def load_checkpoint(
    path: Path, *, optimizer: Any, scheduler: Any, rank: int = 0, verify: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore optimizer, scheduler and this process's RNG; return (model tensors, state dict).

    ``verify`` checks every file against its checksum first (skip it only for a checkpoint
    :func:`find_intact` just returned); a missing or damaged file raises :class:`CheckpointError`.
    """
    if verify and (reason := check_checkpoint(path)) is not None:
        raise CheckpointError(f"invalid checkpoint: {reason}", file=str(path))
    state = read_state(path)
    model_state = _load_tensors(path / "model.safetensors")
    opt_tensors = _load_tensors(path / "optimizer.safetensors")
    if (path / "schedule.safetensors").is_file():
        state.setdefault("schedule", {})["tensors"] = _load_tensors(path / "schedule.safetensors")
    optimizer.load_state_dict(optimizer_from_files(opt_tensors, _read_json(path / "optimizer.json")))
    scheduler.load_state_dict(_read_json(path / "scheduler.json"))
    rng_file = path / f"rng-rank{rank}.safetensors"
    if rank < int(state.get("world_size", 1)):
        set_rng_state(_load_tensors(rng_file), _read_json(path / f"rng-rank{rank}.json"))
    else:
        warnings.warn(
            f"{path}: written by {state.get('world_size')} processes, so process {rank} has no saved "
            "RNG state; its generators keep the seed's",
            PreflabWarning,
            stacklevel=2,
        )
    return model_state, state
