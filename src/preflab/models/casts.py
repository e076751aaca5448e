"""Compute-dtype copies of frozen linear weights, made once per run instead of once per forward pass.

Under autocast every ``F.linear`` casts its fp32 weight to bf16, on every forward. A weight that trains
changes each step, so that cast is unavoidable; a *frozen* one (LoRA's base model, a frozen reference
copy) is cast to the same bf16 tensor again and again: ~0.2–0.4 s per forward of SmolLM2-135M's 106 M
decoder-linear weights on this project's 2-core CPU, plus the allocation of the copies. :class:`FrozenCasts`
keeps one bf16 copy per frozen ``nn.Linear`` and, while autocast to that dtype is on, runs the layer
with it. The copy is ``weight.to(bf16)`` — exactly what autocast would have produced — so results are
bitwise unchanged; outside autocast (or under another dtype) the layer runs as before, in fp32.

LoRA layers (peft) cast their input to the adapter weights' dtype (bf16 activations -> fp32) before the
adapter matmul, which autocast then casts back to bf16: a lossless round trip of every adapter input, and
its backward, in every layer (~0.5 s of a ~4 s SmolLM2 LoRA step here). :class:`FrozenCasts` switches that
input cast off for the same span (peft's ``cast_input_dtype_enabled``); the numbers are again unchanged.

The copies are snapshots: :meth:`FrozenCasts.release` must run before the weights change (merging LoRA
adapters, loading a checkpoint into the base); the trainer releases them before it saves the final model.
"""

from __future__ import annotations

import torch
from torch import nn


def compute_dtype(reference: torch.Tensor) -> torch.dtype:
    """The dtype matmuls run in: the autocast dtype when autocast is on for this device, else the weights'."""
    device = reference.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return reference.dtype


class FrozenCasts:
    """``dtype`` copies of ``model``'s frozen fp32 ``nn.Linear`` weights, used by autocast forwards; LoRA
    layers' input casts off. Only for runs whose forwards all run under ``dtype`` autocast."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self.modules: list[nn.Linear] = []
        for module in model.modules():
            if type(module) is not nn.Linear or "forward" in vars(module):
                continue  # subclasses (quantised layers, adapters) and already-patched layers keep their forward
            params = [p for p in (module.weight, module.bias) if p is not None]
            if any(p.requires_grad or p.dtype != torch.float32 for p in params):
                continue
            self._patch(module)
        self.nbytes = sum(m._preflab_cast[0].nbytes for m in self.modules)
        # peft layers whose input cast was on and is now off
        self.tuners = [
            m for m in model.modules() if _is_tuner_layer(m) and getattr(m, "cast_input_dtype_enabled", True)
        ]
        for module in self.tuners:
            module.cast_input_dtype_enabled = False

    def _patch(self, module: nn.Linear) -> None:
        with torch.no_grad():
            weight = module.weight.detach().to(self.dtype)
            bias = None if module.bias is None else module.bias.detach().to(self.dtype)
        module._preflab_cast = (weight, bias)
        original = module.forward  # the class's forward, bound
        dtype = self.dtype

        def forward(x: torch.Tensor) -> torch.Tensor:
            dev = x.device.type
            if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == dtype:
                return nn.functional.linear(x, weight, bias)  # autocast casts x; the weight already is `dtype`
            return original(x)

        module.forward = forward
        self.modules.append(module)

    def release(self) -> None:
        """Drop the copies and restore every layer's own forward (idempotent)."""
        for module in self.modules:
            vars(module).pop("forward", None)
            vars(module).pop("_preflab_cast", None)
        self.modules = []
        self.nbytes = 0
        for module in self.tuners:
            module.cast_input_dtype_enabled = True
        self.tuners = []


def _is_tuner_layer(module: nn.Module) -> bool:
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # peft missing or reorganised: adapters keep casting their input
        return False
    return isinstance(module, BaseTunerLayer)


def cached_weight(module: nn.Module, dtype: torch.dtype) -> torch.Tensor | None:
    """``module``'s frozen-weight copy in ``dtype`` made by :class:`FrozenCasts`, if there is one."""
    cast = getattr(module, "_preflab_cast", None)
    return cast[0] if cast is not None and cast[0].dtype == dtype else None
