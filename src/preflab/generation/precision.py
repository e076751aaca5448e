"""The dtype sampling decodes in: bf16 autocast on GPUs, bf16 weights for the call on CPUs where bf16 matmuls pay
(:func:`preflab.models.bf16.cpu_bf16_pays`), else the model's own weights, whose per-token log-probs are then the
model's own (:func:`decodes_own_weights`)."""

from __future__ import annotations

import contextlib


def bf16_autocast_ok(model, enabled: bool | None = True) -> bool:
    """Whether to run a forward pass under bf16 autocast: ``enabled`` True = where it pays (bf16 GPUs; CPUs
    whose bf16 matmuls beat fp32, :func:`preflab.models.bf16.cpu_bf16_pays`); None = only on GPUs; False =
    never. (Decoding uses :func:`bf16_weights` on CPU instead.)"""
    if enabled is False:
        return False
    if enabled is None and model.device.type == "cpu":
        return False
    from ..models.bf16 import bf16_pays

    return bf16_pays(model.device)


def cpu_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def bf16_weights(model, enabled: bool | None = True):
    """Where :func:`casts_weights` says so, the model's fp32 parameters become bf16 inside the block and are
    restored (the very same tensors) after; buffers (e.g. rotary frequencies) stay as they are."""
    import torch

    if not casts_weights(model, enabled):
        yield model
        return
    saved = []
    try:
        with torch.no_grad():
            for p in model.parameters():
                if p.dtype == torch.float32:
                    saved.append((p, p.data))
                    p.data = p.data.to(torch.bfloat16)
        yield model
    finally:
        for p, data in saved:
            p.data = data


def casts_weights(model, enabled: bool | None) -> bool:
    """Whether :func:`bf16_weights` casts this model's weights: fp32 parameters on a CPU with bf16 support, and
    for ``enabled`` None one where bf16 matmuls pay (:func:`preflab.models.bf16.cpu_bf16_pays`)."""
    import torch

    if enabled is False or model.device.type != "cpu" or not cpu_bf16_supported():
        return False
    if not any(p.dtype == torch.float32 for p in model.parameters()):
        return False
    from ..models.bf16 import cpu_bf16_pays

    return enabled is True or cpu_bf16_pays()


def decodes_own_weights(model, bf16: bool | None) -> bool:
    """Whether :func:`sample` decodes with the model's own weights and dtype (no bf16 cast of the weights on a
    CPU, no autocast on a GPU): then the rollout engine's per-token log-probs are the model's own."""
    return not casts_weights(model, bf16) and not (model.device.type == "cuda" and bf16_autocast_ok(model, bf16))
