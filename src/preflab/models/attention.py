"""Which scaled-dot-product-attention kernel a scoring forward uses on a CPU.

PyTorch's CPU flash-attention kernel (what ``sdpa`` dispatches to by default) has a slow backward for
the short rows of preference training. Its math kernel computes the same thing (in fp32 for bf16
inputs, so it is as accurate: on (8, 9, 162, 64) bf16 inputs both are 0.047 from the float64 answer,
where an eager softmax over bf16 scores is 0.071) and its backward is about twice as fast:
21 vs 44 ms forward + backward for that attention (``bench/`` numbers in the README's Performance
section). It materialises the (rows, heads, T, T) probabilities, so it is only chosen while those stay
small; long rows keep the flash kernel, whose memory is linear in T.

:func:`scoring_attention` applies the choice to one forward of
:class:`preflab.models.logprobs.SequenceScorer`, in grad and no-grad mode alike, so that a policy
forward and the reference log-probs cached for it use the same kernel (at the first step of a cached
DPO run the policy equals the reference: the loss is exactly log 2). Models whose attention is not
``sdpa`` (eager, flash-attention packages) are unaffected, and so are models trained with gradient
checkpointing (their backward recomputes the blocks outside the context, with the default kernel).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

# The math kernel keeps fp32 scores and probabilities of every layer for backward: ~8 bytes per score.
MATH_BYTES_PER_SCORE = 8
MATH_BUDGET_BYTES = 1 << 30


def math_score_bytes(config: Any, rows: int, length: int) -> int:
    """Bytes the math kernel keeps for backward over all layers, for ``rows`` rows of ``length`` tokens."""
    heads = getattr(config, "num_attention_heads", None) or 1
    layers = getattr(config, "num_hidden_layers", None) or 1
    return MATH_BYTES_PER_SCORE * rows * heads * length * length * layers


def prefers_math(config: Any, input_ids: torch.Tensor) -> bool:
    """True when a CPU forward over ``input_ids`` should use the math kernel (see the module docstring)."""
    if config is None or input_ids.device.type != "cpu" or input_ids.dim() != 2:
        return False
    rows, length = input_ids.shape
    return math_score_bytes(config, rows, length) <= MATH_BUDGET_BYTES


@contextmanager
def scoring_attention(config: Any, input_ids: torch.Tensor) -> Iterator[bool]:
    """Run the enclosed forward with the math SDPA kernel when :func:`prefers_math`; yields whether it does."""
    use = prefers_math(config, input_ids)
    with sdpa_kernel(SDPBackend.MATH) if use else nullcontext():
        yield use
