"""Which attention kernel a training forward uses on a CPU.

PyTorch's CPU flash-attention kernel (what ``sdpa`` dispatches to) has a slow backward for the short rows
of preference training: on SmolLM2-135M, 8 prefix-shared pairs of ~160 tokens, bf16 autocast, the
decoder's backward took 2.6–3.3 s with ``sdpa`` and 1.9 s with transformers' ``eager`` attention (the
forward is the same speed), i.e. one optimizer step 3.6–4.6 s → 3.1 s
(``bench/dpo_throughput.py``; the note in the README's Performance section). Eager attention stores
the (rows, heads, T, T) probabilities for backward, so it is only chosen while those stay small;
long rows keep ``sdpa``, whose memory is linear in T.

:func:`training_attention` switches a model's ``config._attn_implementation`` (transformers reads it
at every forward, and every model's own eager function handles its quirks: soft-capping, sinks) for
the duration of one forward, and only when: the forward builds a graph (no-grad passes keep ``sdpa``,
whose forward is as fast), the inputs are on a CPU, the model is set to ``sdpa``, and the eager
probabilities of all layers fit :data:`EAGER_BUDGET_BYTES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# Eager attention keeps an fp32 softmax output and its bf16 copy per layer: ~6 bytes per score.
EAGER_BYTES_PER_SCORE = 6
EAGER_BUDGET_BYTES = 1 << 30


def attention_configs(model: nn.Module) -> list[Any]:
    """The distinct config objects whose ``_attn_implementation`` the model's modules read."""
    seen: dict[int, Any] = {}
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation") and id(cfg) not in seen:
            seen[id(cfg)] = cfg
    return list(seen.values())


def eager_score_bytes(config: Any, rows: int, length: int) -> int:
    """Bytes that eager attention keeps for backward over all layers, for ``rows`` rows of ``length``."""
    heads = getattr(config, "num_attention_heads", None) or 1
    layers = getattr(config, "num_hidden_layers", None) or 1
    return EAGER_BYTES_PER_SCORE * rows * heads * length * length * layers


def prefers_eager(configs: list[Any], input_ids: torch.Tensor) -> bool:
    """True when this forward should run eager attention instead of ``sdpa`` (see the module docstring)."""
    if not configs or input_ids.device.type != "cpu" or not torch.is_grad_enabled():
        return False
    if any(getattr(c, "_attn_implementation", None) != "sdpa" for c in configs):
        return False
    rows, length = input_ids.shape
    return eager_score_bytes(configs[0], rows, length) <= EAGER_BUDGET_BYTES


@contextmanager
def training_attention(configs: list[Any], input_ids: torch.Tensor) -> Iterator[str | None]:
    """Run the enclosed forward with eager attention when :func:`prefers_eager`; yields the implementation."""
    if not prefers_eager(configs, input_ids):
        yield configs[0]._attn_implementation if configs else None
        return
    saved = [c._attn_implementation for c in configs]
    try:
        for c in configs:
            c._attn_implementation = "eager"
        yield "eager"
    finally:
        for c, impl in zip(configs, saved, strict=True):
            c._attn_implementation = impl
