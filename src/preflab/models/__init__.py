"""Model loading (embedded default, GGUF, HF dirs and ids) and tiny test models."""

from .embedded import DEFAULT_MODEL, EMBEDDED, cache_dir, list_models
from .loading import (
    load_model,
    load_model_and_tokenizer,
    load_tokenizer,
    resolve_model,
)
from .reward import RewardScorer, load_reward_model
from .tiny import save_tiny_model, tiny_model, tiny_tokenizer
from .vml import warm_vml

warm_vml()  # before any multi-threaded elementwise call: MKL's vector math sets itself up racily (models/vml.py)

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "RewardScorer",
    "cache_dir",
    "list_models",
    "load_model",
    "load_model_and_tokenizer",
    "load_reward_model",
    "load_tokenizer",
    "resolve_model",
    "save_tiny_model",
    "tiny_model",
    "tiny_tokenizer",
    "warm_vml",
]
