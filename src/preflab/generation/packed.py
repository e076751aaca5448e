"""Linear layers with prepacked weights for CPU decoding.

PyTorch's CPU ``linear`` hands a plain ``[out, in]`` weight to oneDNN (or MKL) at every call, and oneDNN
reorders it into its blocked layout (VNNI tiles for AMX / AVX-512 BF16) each time: for the decoder's small
matmuls (one token per row, at most a few hundred rows) the reorder costs as much as the product. Inside
:func:`packed_linears` every ``torch.nn.Linear`` of the model computes with a weight reordered once, through
the oneDNN ops that ``torch.compile``'s CPU freezing pass uses (``mkldnn._reorder_linear_weight`` and
``mkldnn._linear_pointwise``). Measured on this project's Xeon/AMX image, one thread, 64 rows, bf16:
576→1536 225 → 146 µs, the 576→49,152 output layer 11.1 → 4.1 ms (``bench/generation.py`` has the end-to-end
numbers). Inputs with more rows than ``max_rows`` (a prefill) keep the plain path, where the reorder is
amortised and the blocked layout chosen for a decoding batch is slower.

The products are the same as ``F.linear``'s up to the order of the accumulation. The packed weights are a
snapshot: the block is for decoding with fixed weights (a :func:`~preflab.generation.sample` call); an
optimiser step inside it would not be seen. Where the ops are missing (another build of torch, a GPU) the block
changes nothing, and so does a dtype the CPU cannot run there (bf16 without AVX-512 or AVX-NE-CONVERT).
"""

from __future__ import annotations

import contextlib
import functools


@functools.cache
def packing_available(dtype: str = "float32") -> bool:
    """Whether this torch build and CPU run the oneDNN linear ops on ``dtype`` weights (probed once per dtype on
    a tiny product: bf16 needs AVX-512 BW/VL/DQ or AVX-NE-CONVERT, which an AVX2-only CPU lacks)."""
    import torch

    dt = getattr(torch, dtype)
    try:
        w = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2, dtype=dt), 1)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2, dtype=dt), w, None, "none", [], "")
        return bool(torch.equal(out.float(), torch.full((1, 2), 2.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _packed_forward(module, packed, max_rows: int):
    import torch
    import torch.nn.functional as F

    weight, bias = module.weight, module.bias
    linear = torch.ops.mkldnn._linear_pointwise

    def forward(x):
        if (
            x.dtype == weight.dtype
            and x.numel() <= max_rows * x.shape[-1]
            and not (torch.is_grad_enabled() and weight.requires_grad)
        ):
            return linear(x, packed, bias, "none", [], "")
        return F.linear(x, weight, bias)

    return forward


@contextlib.contextmanager
def packed_linears(model, *, rows_hint: int = 64, max_rows: int = 512):
    """Inside the block the CPU model's ``nn.Linear`` layers (float32 or bf16 weights; LoRA's base and adapter
    layers included) multiply with prepacked weights; the modules are restored on exit. ``rows_hint``: the
    batch size the layout is chosen for; ``max_rows``: inputs with more rows take the plain path."""
    import torch

    if not packing_available():
        yield model
        return
    patched = []
    try:
        with torch.no_grad():
            for module in model.modules():
                if type(module) is not torch.nn.Linear or "forward" in module.__dict__:
                    continue  # subclasses and hooked modules (accelerate) keep their own forward
                weight = module.weight
                if weight.dtype not in (torch.float32, torch.bfloat16) or weight.device.type != "cpu":
                    continue
                if not packing_available(str(weight.dtype).removeprefix("torch.")):
                    continue  # e.g. bf16 weights on a CPU without AVX-512: F.linear as before
                if module.bias is not None and module.bias.dtype != weight.dtype:
                    continue
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)
                module.forward = _packed_forward(module, packed, max_rows)
                patched.append(module)
        yield model
    finally:
        for module in patched:
            del module.forward
