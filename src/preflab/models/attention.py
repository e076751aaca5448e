"""The attention of a CPU scoring forward: PyTorch's flash kernel forward, a decomposed backward.

PyTorch's CPU flash-attention kernel (what ``sdpa`` dispatches to by default) has a fast, accurate forward
(bf16 products accumulated in fp32, an online fp32 softmax, memory linear in T) and a slow backward for the
short rows of preference training. SDPA's math kernel has a faster backward but upcasts bf16 inputs to
fp32 and runs fp32 batched matmuls, 4–5× slower than bf16 ones on this CPU. :class:`FlashAttention` keeps
the flash forward and writes its backward with matmuls: it recomputes the scores from the saved q, k and
the forward's logsumexp (fp32 scores: a product of bf16 numbers is exact in fp32), and runs the other four
matmuls (dV, dP, dQ, dK) in the input dtype. On (8, 9, 178, 64) bf16 with a prefix-sharing mask, one
layer's forward + backward takes 12 ms compiled against the math kernel's 18 ms; the output is as
accurate as the math kernel's (relative error to float64 3.2e-3 vs 3.0e-3) and the gradients slightly
less (dQ 4.8e-3 vs 3.9e-3, dV 3.4e-3 vs 3.0e-3): they are bf16 matmuls, as in every other layer's
backward. The backward materialises one layer's (rows, heads, T, T) fp32 scores at a time, so it is only
used while they stay small (:func:`prefers_decomposed`); long rows keep the default kernel.

:func:`scoring_attention` applies it to one forward of :class:`preflab.models.logprobs.SequenceScorer`, in
grad and no-grad mode alike, by standing in for transformers' ``sdpa`` attention function, so that a policy
forward and the reference log-probs cached for it run the same kernel (at the first step of a cached DPO
run the policy equals the reference: the loss is exactly log 2). Calls it cannot serve exactly (a KV
cache, attention dropout, a float mask, soft-capping, position biases, GPU tensors) go to transformers'
own function. Models whose attention is not ``sdpa`` are unaffected, and so are models trained with
gradient checkpointing (their backward recomputes the blocks outside the context).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .casts import compute_dtype
from .packing import RowPacking, Segments

__all__ = ["FlashAttention", "RowPacking", "Segments", "row_packing", "scoring_attention", "scoring_sdpa"]

# fp32 scores, probabilities, dP and dS of one layer live at once in the backward: 16 bytes per score.
BACKWARD_BYTES_PER_SCORE = 16
BUDGET_BYTES = 1 << 28

_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def backward_score_bytes(config: Any, rows: int, length: int) -> int:
    """Bytes one layer's decomposed backward holds at once, for ``rows`` rows of ``length`` tokens."""
    heads = getattr(config, "num_attention_heads", None) or 1
    return BACKWARD_BYTES_PER_SCORE * rows * heads * length * length


def prefers_decomposed(config: Any, input_ids: Tensor) -> bool:
    """True when a CPU forward over ``input_ids`` should use :class:`FlashAttention` (see the module docstring)."""
    if config is None or input_ids.device.type != "cpu" or input_ids.dim() != 2:
        return False
    if (getattr(config, "_attn_implementation", None) or "sdpa") != "sdpa":
        return False
    rows, length = input_ids.shape
    return backward_score_bytes(config, rows, length) <= BUDGET_BYTES


class FlashAttention(torch.autograd.Function):
    """``softmax(q kᵀ · scale + mask) v`` for ``(B, H, T, D)`` q, k, v and a boolean ``(B|1, 1|H, T, T)`` mask
    (True = attend) or None; the flash kernel forward, a matmul backward (module docstring).

    With P the probabilities, O the output and g = dO:
    dV = Pᵀ g,  dP = g Vᵀ,  dS = P ⊙ (dP − rowsum(g ⊙ O)) · scale,  dQ = dS K,  dK = dSᵀ Q.
    """

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float, causal: bool) -> Tensor:
        additive = None  # (inputs arrive in one dtype: scoring_sdpa casts them as autocast would)
        if mask is not None:  # the kernel takes a mask of the query's dtype, added to the scores
            additive = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        out, lse = _flash(q, k, v, 0.0, causal and mask is None, attn_mask=additive, scale=scale)
        ctx.save_for_backward(q, k, v, mask, out, lse)
        ctx.scale, ctx.causal = scale, causal and mask is None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        with torch.autocast(grad_out.device.type, enabled=False):  # the dtypes below are the point
            return FlashAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx: Any, grad_out: Tensor):
        q, k, v, mask, out, lse = ctx.saved_tensors
        scale = ctx.scale
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(scale)
        probs = scores.sub_(lse.unsqueeze(-1)).exp_()
        if mask is not None:
            probs = probs.masked_fill(~mask, 0.0)
        elif ctx.causal:
            t_q, t_k = q.shape[-2], k.shape[-2]
            probs = probs.masked_fill(
                torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril_().logical_not_(), 0.0
            )
        g = grad_out.to(q.dtype)
        grad_v = torch.matmul(probs.to(q.dtype).transpose(-1, -2), g)
        grad_p = torch.matmul(g, v.transpose(-1, -2)).float()
        row = (g.float() * out.float()).sum(-1, keepdim=True)
        grad_s = probs.mul_(grad_p.sub_(row)).mul_(scale).to(q.dtype)
        grad_q = torch.matmul(grad_s, k)
        grad_k = torch.matmul(grad_s.transpose(-1, -2), q)
        return grad_q, grad_k, grad_v, None, None, None


_PACKING: list[RowPacking] = []  # the packing of the scoring forward now running (innermost last)


def _servable(query: Tensor, key: Tensor, attention_mask: Tensor | None, dropout: float, kwargs: dict) -> bool:
    """True when :class:`FlashAttention` computes exactly what transformers' sdpa function would."""
    if query.device.type != "cpu" or compute_dtype(query) not in (torch.float32, torch.bfloat16):
        return False
    if dropout or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        return False
    if kwargs.get("output_attentions") or query.shape[-2] != key.shape[-2]:  # KV cache: default path
        return False
    return attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.dim() == 4)


def scoring_sdpa(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention-function signature: :class:`FlashAttention` where it applies, else ``sdpa``."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    packing = _PACKING[-1] if _PACKING else None
    if packing is not None and not (query.shape[0] == 1 and query.shape[2] == packing.tokens.numel()):
        packing = None  # not this forward's tokens (a nested model call)
    if not _servable(query, key, attention_mask, dropout, kwargs):
        if packing is not None:
            raise RuntimeError(
                "a row-packed scoring forward reached an attention call it cannot serve "
                f"(dropout {dropout}, options {sorted(kwargs)}); use the prefix_shared layout unpacked"
            )
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
        )
    # SDPA runs in autocast's lower precision, every input cast to it
    dtype = compute_dtype(query)
    query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
    groups = getattr(module, "num_key_value_groups", 1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    if packing is not None and packing.segments is not None and _row_mask_is(packing, attention_mask):
        with torch.autocast("cpu", enabled=False):
            return packing.segments.attend(query, key, value, groups, float(scale)), None
    if packing is not None:  # the layer's own mask (a sliding window narrows it) is in the rows' (R, 1|H, T, T) form
        query, key, value = packing.to_rows(query), packing.to_rows(key), packing.to_rows(value)
        if attention_mask is None:
            attention_mask = packing.mask
        elif attention_mask.shape[0] != packing.mask.shape[0] or attention_mask.shape[-2:] != packing.mask.shape[-2:]:
            raise RuntimeError(
                f"a row-packed scoring forward got a {tuple(attention_mask.shape)} attention mask for "
                f"its {tuple(packing.mask.shape)} rows; use the prefix_shared layout unpacked"
            )
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    with torch.autocast("cpu", enabled=False):
        out = FlashAttention.apply(query, key, value, attention_mask, float(scale), bool(causal))
    if packing is not None:
        return packing.to_packed(out), None
    return out.transpose(1, 2).contiguous(), None


def _row_mask_is(packing: RowPacking, attention_mask: Tensor | None) -> bool:
    """Whether the layer attends with the batch's own prefix-shared mask (not one a sliding window narrowed):
    compared once per mask tensor, which the decoder's layers share."""
    if attention_mask is None or attention_mask is packing.mask:
        return True
    seen = packing.checked
    if seen is not None and seen[0] is attention_mask:
        return seen[1]
    same = attention_mask.shape == packing.mask.shape and bool(torch.equal(attention_mask, packing.mask))
    packing.checked = (attention_mask, same)
    return same


@contextmanager
def scoring_attention(config: Any, input_ids: Tensor) -> Iterator[bool]:
    """Run the enclosed forward with :func:`scoring_sdpa` as the ``sdpa`` attention when
    :func:`prefers_decomposed`; yields whether it does."""
    use = prefers_decomposed(config, input_ids)
    if not use:
        yield False
        return
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, before = "sdpa" in local, local.get("sdpa")
    local["sdpa"] = scoring_sdpa
    try:
        yield True
    finally:
        if had:
            local["sdpa"] = before
        else:
            local.pop("sdpa", None)


@contextmanager
def row_packing(packing: RowPacking) -> Iterator[RowPacking]:
    """Let :func:`scoring_sdpa` serve the enclosed forward's packed tokens through ``packing``'s rows."""
    _PACKING.append(packing)
    try:
        yield packing
    finally:
        _PACKING.pop()
