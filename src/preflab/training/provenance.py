"""Provenance: a fingerprint of everything that determines a run's result, kept in ``OUTPUT_DIR/provenance.json``.

The fingerprint covers the validated config (less the keys that only change how a run is watched or
saved, :data:`NOT_RESULT_KEYS`), a hash of the training (and eval) records as the trainer receives them,
and the model's identity (its name and revision, plus a content hash of a local model directory or file,
or of the weights of a model handed over in Python). The code version (preflab version, git commit when
running from a checkout) is recorded per session but is not part of the fingerprint: a bug-fix release
must not strand a half-finished run. :mod:`preflab.training.rundir` compares fingerprints on resume.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..files import atomic_write_text

PROVENANCE_FILE = "provenance.json"
FORMAT = 1

#: Config keys (and sections) that change how a run is watched, logged or saved, not the weights it produces.
NOT_RESULT_KEYS = (
    "output_dir",
    "eval",
    "quickstart",
    "data.path",
    "data.eval_path",
    "data.report_path",
    "train.resume",
    "train.progress",
    "train.report_to",
    "train.project_name",
    "train.log_every",
    "train.eval_every",
    "train.save_every",
    "train.keep_last",
    "train.save_final",
    "train.merge_lora",
)
_CHUNK = 1 << 20


# ---------------------------------------------------------------- the parts of a fingerprint


def flatten_sections(section: Any, prefix: str = "") -> dict[str, Any]:
    """A config's fields by dotted name (``train.lr``), recursing into sections only: a free-form mapping
    (``online.judge_args``) stays one value, so a key dropped from it still shows as a difference."""
    from pydantic import BaseModel

    dumped = section.model_dump(mode="json")
    out: dict[str, Any] = {}
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            out.update(flatten_sections(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = dumped[name]
    return out


def objective_params(cfg: Any) -> dict[str, Any]:
    """The objective's parameters with their defaults filled in (``beta: 0.1`` given or not is one run): the
    dataclass's, then the algorithm table's, then the config's."""
    from .config import make_params
    from .lm_algorithms import configured_algorithm

    params = make_params(cfg.objective.name, {**configured_algorithm(cfg).params, **cfg.objective.params})
    values = asdict(params) if is_dataclass(params) else dict(cfg.objective.params)
    return {f"objective.params.{k}": json.loads(json.dumps(v, default=str)) for k, v in values.items()}


def result_config(cfg: Any) -> dict[str, Any]:
    """The config's result-determining keys, by dotted name (objective parameters resolved)."""
    flat = flatten_sections(cfg)
    del flat["objective.params"]
    flat.update(objective_params(cfg))
    return {k: v for k, v in flat.items() if not any(k == skip or k.startswith(f"{skip}.") for skip in NOT_RESULT_KEYS)}


def _plain(record: Any) -> Any:
    from ..data.serialize import CORE_FIELDS, record_to_dict

    if type(record) in CORE_FIELDS:
        return record_to_dict(record)
    if hasattr(record, "to_dict"):
        return record.to_dict()
    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    return record


def records_digest(records: Iterable[Any] | None) -> dict[str, Any] | None:
    """Row count and sha256 of the records (each as canonical JSON), or None without records."""
    if records is None:
        return None
    h, n = hashlib.sha256(), 0
    for record in records:
        h.update(json.dumps(_plain(record), sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\n")
        n += 1
    return {"rows": n, "sha256": h.hexdigest()}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def files_digest(root: Path, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """sha256 of every file of a model directory (or of one model file), combined into one digest.

    ``known`` (the ``files`` of an earlier record) lets a file whose size and mtime are unchanged keep its
    recorded hash instead of being read again, as ``git status`` does.
    """
    known = known or {}
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    files: dict[str, Any] = {}
    for p in paths:
        rel = p.name if p == root else p.relative_to(root).as_posix()
        st = p.stat()
        old = known.get(rel) or {}
        same = old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns and old.get("sha256")
        files[rel] = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "sha256": old["sha256"] if same else _file_sha256(p),
        }
    combined = hashlib.sha256(json.dumps({k: v["sha256"] for k, v in files.items()}, sort_keys=True).encode())
    return {"sha256": combined.hexdigest(), "files": files}


def weights_sha256(model: Any) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes and bytes), for a model given in Python."""
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_identity(cfg: Any, model: Any = None, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the policy starts from: the model given in Python, a local directory / file, or a name."""
    if model is not None:
        return {"source": "python", "class": type(model).__name__, "weights_sha256": weights_sha256(model)}
    path = Path(cfg.model.name_or_path)
    if path.exists():
        digest = files_digest(path, (known or {}).get("files"))
        return {"source": "local", "sha256": digest["sha256"], "files": digest["files"]}
    return {"source": "name"}  # an embedded name or hub id: name and revision are in the config


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """preflab's version, and the git commit (and whether src/ has local changes) of a source checkout."""
    from .. import __version__

    out: dict[str, Any] = {"version": __version__, "commit": None}
    src = Path(__file__).resolve().parents[2]
    if src.name != "src" or not (src.parent / "pyproject.toml").is_file():
        return out  # an installed package: the version says it
    try:
        head = subprocess.run(
            ["git", "-C", str(src.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(src.parent), "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return out
    if head.returncode == 0:
        out.update(commit=head.stdout.strip(), dirty=bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)
    return out


# ---------------------------------------------------------------- the document


def fingerprint_of(doc: Mapping[str, Any]) -> str:
    """The hash of a provenance document's comparable part (code version and stat caches excluded)."""
    blob = json.dumps(comparable(doc), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def build_provenance(
    cfg: Any,
    records: Any,
    eval_records: Any = None,
    model: Any = None,
    judge: Any = None,
    known: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance document of a run about to start (``known``: the directory's earlier one, if any)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "config": result_config(cfg),
        "data": {"train": records_digest(records), "eval": records_digest(eval_records)},
        "model": model_identity(cfg, model, (known or {}).get("model")),
    }
    if judge is not None:
        doc["judge"] = type(judge).__name__
    doc["fingerprint"] = fingerprint_of(doc)
    doc["created"] = now()
    doc["forked_from"] = None
    doc["sessions"] = []
    return doc


def comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Flat ``{key: value}`` of what must match for a run to continue: config keys, data, model, judge."""
    out = dict(doc.get("config") or {})
    for split, digest in (doc.get("data") or {}).items():
        out[f"{split} data"] = None if digest is None else f"{digest['rows']} rows, sha256 {digest['sha256'][:12]}"
    model = doc.get("model") or {}
    for key in ("source", "class", "sha256", "weights_sha256"):
        if key in model:
            out[f"model {key}"] = model[key]
    if "judge" in doc:
        out["judge"] = doc["judge"]
    return out


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every comparable key both documents hold and that differs (a key only one
    holds is a config field added or removed by another preflab version, or a parameter of another
    objective, whose name then differs)."""
    a, b = comparable(old), comparable(new)
    return [f"{k}: {_show(a[k])} -> {_show(b[k])}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def read_provenance(run_dir: Path) -> dict[str, Any] | None:
    """The run directory's provenance document; None when there is none."""
    path = run_dir / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"unreadable provenance ({exc}); move it aside to resume without the check", file=str(path)
        ) from None
    if not isinstance(doc, dict):
        raise CheckpointError("provenance is not a JSON object", file=str(path))
    return doc


def write_provenance(run_dir: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``run_dir/provenance.json`` atomically."""
    return atomic_write_text(run_dir / PROVENANCE_FILE, json.dumps(doc, indent=1, sort_keys=False) + "\n")
