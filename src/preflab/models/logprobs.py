"""Sequence log-probabilities without a full-vocabulary log-softmax.

The log-prob of a target token is ``logit[target] − logsumexp(logits)``: gather one logit, subtract a
logsumexp computed in fp32 over chunks of rows, never materialising a ``(tokens, vocab)`` log_softmax.
:func:`linear_token_logprobs` goes further and computes the lm-head itself in chunks from the final hidden
states, only at the positions that predict a completion token, with a custom backward that recomputes each
chunk's logits instead of storing them (the "fused linear cross-entropy" trick of Liger-Kernel / Apple's
Cut Cross-Entropy, Wijmans et al. 2024): peak memory O(chunk × vocab) instead of O(tokens × vocab).

:class:`SequenceScorer` wraps a causal LM as an ``nn.Module`` whose forward maps a
:class:`preflab.data.collate.SequenceBatch` (any layout: padded, packed, prefix-shared) to one summed
log-prob per sequence, so that distributed wrappers (DDP) see one forward per step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .attention import RowPacking, row_packing, scoring_attention
from .casts import cached_weight, compute_dtype

DEFAULT_CHUNK = 1024


def token_logprobs(logits: Tensor, targets: Tensor, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """``log softmax(logits)[target]`` per row, in fp32: gathered logit minus a row-chunked logsumexp.

    ``logits`` is ``(N, V)`` (any float dtype), ``targets`` ``(N,)``. Differentiable through ``logits``;
    backward saves only the ``(N,)`` logsumexps and forms ``g·(onehot − softmax)`` chunk by chunk from the
    logits themselves, so no fp32 ``(N, V)`` copy is kept for it.
    """
    if logits.shape[0] != targets.shape[0]:
        raise ValueError(f"{logits.shape[0]} rows of logits for {targets.shape[0]} targets")
    if logits.shape[0] == 0:
        return logits.new_zeros(0, dtype=torch.float32)
    return _GatherLogprob.apply(logits, targets, max(1, int(chunk_size)))


class _GatherLogprob(torch.autograd.Function):
    """``logits[t] − logsumexp(logits)`` over row chunks; d/dlogits = g·(onehot(t) − softmax(logits))."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, targets: Tensor, chunk_size: int) -> Tensor:
        out = logits.new_empty(logits.shape[0], dtype=torch.float32)
        lses = logits.new_empty(logits.shape[0], dtype=torch.float32)
        for start in range(0, logits.shape[0], chunk_size):
            stop = start + chunk_size
            chunk = logits[start:stop].float()
            lses[start:stop] = torch.logsumexp(chunk, dim=-1)
            out[start:stop] = chunk.gather(-1, targets[start:stop].unsqueeze(-1)).squeeze(-1) - lses[start:stop]
        ctx.save_for_backward(logits, targets, lses)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        logits, targets, lses = ctx.saved_tensors
        grad = torch.empty_like(logits)
        g_all = grad_out.float()
        for start in range(0, logits.shape[0], ctx.chunk_size):
            stop = start + ctx.chunk_size
            g = g_all[start:stop].unsqueeze(-1)
            dz = logits[start:stop].to(torch.float32, copy=True)  # a copy: the saved logits stay intact
            dz.sub_(lses[start:stop].unsqueeze(-1)).exp_().mul_(-g)
            grad[start:stop] = dz.scatter_add_(-1, targets[start:stop].unsqueeze(-1), g)
        return grad, None, None


# Rows per slice of the fp32 softmax work inside a chunk: a (64, 49152) fp32 slice is 12 MiB, so the
# elementwise passes run on a slice that stays in cache instead of a (chunk, vocab) fp32 temporary.
SOFTMAX_ROWS = 64


class _LinearLogprob(torch.autograd.Function):
    """``log softmax(h Wᵀ + b)[t]`` chunk by chunk; backward recomputes each chunk's logits (all rows in one
    chunk: it reuses the forward's, which costs no memory at the peak, where the recomputed buffer would be).

    d/dz log softmax(z)[t] = onehot(t) − softmax(z), so with upstream gradient g (one per row):
    dh = (g·(onehot − p)) W,  dW = (g·(onehot − p))ᵀ h,  db = Σ_rows g·(onehot − p).
    Per chunk of c rows the only (c, V) tensor is the compute-dtype logits; the fp32 logsumexp and
    softmax work runs on slices of :data:`SOFTMAX_ROWS` rows, and in backward the gradient dz is written
    back into the logits buffer before the two matmuls. dW is accumulated in one fp32 buffer. The
    compute-dtype copy of W made in forward is kept for backward (one cast per step, not two).
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        chunk_size: int,
        dtype: torch.dtype,
    ) -> Tensor:
        out = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        lses = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        for start in range(0, hidden.shape[0], chunk_size):
            stop = min(start + chunk_size, hidden.shape[0])
            logits = torch.nn.functional.linear(hidden[start:stop].to(dtype), w, b)
            for s in range(0, stop - start, SOFTMAX_ROWS):
                rows = slice(start + s, min(start + s + SOFTMAX_ROWS, stop))
                z = logits[s : s + SOFTMAX_ROWS].float()
                lse = torch.logsumexp(z, dim=-1)
                lses[rows] = lse
                out[rows] = z.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1) - lse
            # one chunk: keep its logits for backward, which would allocate the same buffer to recompute them
            ctx.kept = logits if stop - start == hidden.shape[0] and any(ctx.needs_input_grad[:3]) else None
            del logits
        ctx.save_for_backward(hidden, w, b, targets, lses)
        ctx.chunk_size, ctx.dtype = chunk_size, dtype
        ctx.weight_dtype = weight.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        hidden, w, b, targets, lses = ctx.saved_tensors
        chunk, dtype = ctx.chunk_size, ctx.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        grad_h = torch.empty_like(hidden) if need_h else None  # every row is written below
        grad_w: Tensor | None = None
        grad_b: Tensor | None = None
        g_all = grad_out.float()
        for start in range(0, hidden.shape[0], chunk):
            stop = min(start + chunk, hidden.shape[0])
            h = hidden[start:stop].to(dtype)
            dz, ctx.kept = ctx.kept, None  # the forward's logits, used once (a second backward recomputes them)
            if dz is None:
                dz = torch.nn.functional.linear(h, w, b)  # recomputed logits; overwritten by the gradient below
            for s in range(0, stop - start, SOFTMAX_ROWS):
                rows = slice(start + s, min(start + s + SOFTMAX_ROWS, stop))
                g = g_all[rows].unsqueeze(-1)
                part = dz[s : s + SOFTMAX_ROWS]
                z = part.float()
                z.sub_(lses[rows].unsqueeze(-1)).exp_().mul_(-g)  # −g·softmax, in place
                z.scatter_add_(-1, targets[rows].unsqueeze(-1), g)  # + g·onehot(t)
                if need_b:
                    grad_b = z.sum(0) if grad_b is None else grad_b.add_(z.sum(0))
                part.copy_(z)
            if need_h:
                grad_h[start:stop] = (dz @ w).to(hidden.dtype)
            if need_w:
                prod = dz.t() @ h
                grad_w = prod.float() if grad_w is None else grad_w.add_(prod)
            del dz
        return (
            grad_h,
            grad_w.to(ctx.weight_dtype) if need_w else None,
            grad_b.to(ctx.bias_dtype) if need_b else None,
            None,
            None,
            None,
        )


def linear_token_logprobs(
    hidden: Tensor, weight: Tensor, targets: Tensor, bias: Tensor | None = None, chunk_size: int = DEFAULT_CHUNK
) -> Tensor:
    """Token log-probs of ``targets`` under ``softmax(hidden @ weightᵀ + bias)``, chunked over rows.

    ``hidden`` ``(N, H)``, ``weight`` ``(V, H)`` (the lm-head), ``targets`` ``(N,)``; returns fp32 ``(N,)``.
    Matmuls run in the autocast dtype when autocast is on (bf16 on CPU/GPU), the logsumexp in fp32.
    """
    if hidden.shape[0] == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    dtype = compute_dtype(weight)
    with torch.autocast(hidden.device.type, enabled=False):
        return _LinearLogprob.apply(hidden, weight, bias, targets, max(1, int(chunk_size)), dtype)


def segment_sum(values: Tensor, segments: Tensor, num_segments: int) -> Tensor:
    """``out[s] = Σ values[i] where segments[i] == s`` (differentiable)."""
    out = values.new_zeros(num_segments)
    return out.index_add(0, segments, values)


# Configs whose logits are not a plain linear map of the final hidden state: use the full forward there.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def supports_chunked_head(model: nn.Module) -> bool:
    """True when ``logits == lm_head(decoder(x))`` for this model (no soft-capping or logit scaling)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_decoder") or model.get_output_embeddings() is None:
        return False
    return all(getattr(config, name, None) in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS)


def attention_mask_for(
    model: nn.Module, mask: Tensor | None, position_ids: Tensor | None = None
) -> Tensor | dict[str, Tensor] | None:
    """A layout's mask in the form the model's attention implementation reads.

    transformers passes a 4D mask through unchanged: sdpa reads a boolean one (True = attend), eager
    *adds* it to the scores, so a boolean mask must become 0 / −∞ there (added as 0/1 it would silently
    attend everywhere). Other implementations (flash-attention kernels) take no 4D mask at all. A model
    with sliding-window layers gets the window applied too (:func:`layer_masks`), which transformers
    leaves to the caller of a 4D mask.
    """
    if mask is None or mask.dim() != 4 or mask.dtype != torch.bool:
        return mask
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    if impl not in ("sdpa", "eager"):
        raise ValueError(
            f"the prefix_shared layout needs a 4D attention mask, which '{impl}' attention does not "
            "take; use attn_implementation sdpa or eager, or the padded / packed layout"
        )
    masks = layer_masks(getattr(model, "config", None), mask, position_ids)
    if impl == "eager":

        def additive(m: Tensor) -> Tensor:
            return torch.zeros(m.shape, dtype=torch.float32, device=m.device).masked_fill_(
                ~m, torch.finfo(torch.float32).min
            )

        return {k: additive(m) for k, m in masks.items()} if isinstance(masks, dict) else additive(masks)
    return masks


ATTENTION_TYPES = ("full_attention", "sliding_attention")


def layer_masks(config: Any, mask: Tensor, position_ids: Tensor | None) -> Tensor | dict[str, Tensor]:
    """The boolean ``(R, 1, T, T)`` mask of a 4D layout as each layer of ``config``'s model reads it.

    transformers applies a sliding window (a query at position p sees keys at positions > p − window) when it
    builds a mask itself, not to a 4D mask it is given. Layers are typed by ``config.layer_types`` or, where a
    model has none, all ``sliding_attention`` when ``config.sliding_window`` is set (Mistral, Phi-3) and all
    ``full_attention`` otherwise. One kind of layer: one mask; both kinds: the ``{layer type: mask}`` dict that
    such models take as their ``attention_mask``. The distance is between position ids, which in a
    prefix-shared row continue from the prompt into each completion.
    """
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None) or (["sliding_attention" if window is not None else "full_attention"])
    unknown = sorted(set(types) - set(ATTENTION_TYPES))
    if unknown:
        raise ValueError(
            f"{getattr(config, 'model_type', 'this model')} has {unknown} layers, whose mask a 4D layout "
            "cannot express; use the padded or packed layout"
        )
    if "sliding_attention" not in types:
        return mask
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"sliding_attention layers need a positive config.sliding_window, got {window!r}")
    if position_ids is None:
        raise ValueError("a sliding-window model's 4D mask needs the batch's position_ids")
    near = (position_ids.unsqueeze(-1) - position_ids.unsqueeze(-2)) < window  # (R, Tq, Tk): q − k < window
    windowed = mask & near.unsqueeze(1).to(mask.device)
    if "full_attention" not in types:
        return windowed
    return {"full_attention": mask, "sliding_attention": windowed}


class SequenceScorer(nn.Module):
    """``forward(batch) -> (S,)`` summed completion log-probs of every sequence of a ``SequenceBatch``.

    ``chunked_head=True`` runs the decoder, selects the hidden states that predict completion tokens and
    applies the lm-head in chunks (:func:`linear_token_logprobs`); ``False`` runs the full model and gathers
    from its logits (:func:`token_logprobs`), which works for any causal LM.
    """

    def __init__(self, model: nn.Module, chunked_head: bool | str = "auto", chunk_size: int = DEFAULT_CHUNK):
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size
        if chunked_head == "auto":
            chunked_head = supports_chunked_head(model)
        elif chunked_head and not supports_chunked_head(model):
            raise ValueError(f"{type(model).__name__} transforms its logits; the chunked lm-head cannot be used")
        self.chunked_head = bool(chunked_head)
        self.value_head: nn.Module | None = None  # PPO's critic on the final hidden states (models/value.py)

    def forward(self, batch: Any, per_token: bool = False) -> Any:
        """(S,) summed completion log-probs; with ``per_token`` the (N,) log-probs of the completion tokens in
        plan order (``batch.sequence_index``) and the value head's outputs at the states predicting them (None
        without a value head): ``(token_logprobs, values)``."""
        # CPU, short rows: flash forward, matmul backward (models/attention.py). Not under gradient checkpointing,
        # whose backward recomputes the blocks outside this context (with the default kernel).
        decoder = self.model.get_decoder() if hasattr(self.model, "get_decoder") else None
        checkpointing = decoder is None or bool(getattr(decoder, "gradient_checkpointing", False))
        config = None if checkpointing else getattr(self.model, "config", None)
        with scoring_attention(config, batch.input_ids) as fast:
            packing = self._packing(batch) if fast else None
            if packing is not None:
                with row_packing(packing):
                    return self._forward(batch, packing, per_token)
            return self._forward(batch, None, per_token)

    def _packing(self, batch: Any) -> RowPacking | None:
        """Prefix-shared rows scored through :func:`scoring_sdpa` (no attention dropout) as one packed row, when
        that skips padding or a prompt start the rows share (computed once: under no dropout at all, which would
        draw one mask for every row's copy)."""
        from .policy import has_active_dropout  # (policy.py builds on this module)

        mask = batch.attention_mask
        if batch.layout != "prefix_shared" or mask is None or mask.dim() != 4 or mask.dtype != torch.bool:
            return None
        if self.model.training and float(getattr(self.model.config, "attention_dropout", 0.0) or 0.0):
            return None
        ids = None if self.model.training and has_active_dropout(self.model) else batch.input_ids
        packing = RowPacking.of(mask, ids, batch.position_ids)
        return packing if packing.shared or batch.num_tokens < batch.input_ids.numel() else None

    def _forward(self, batch: Any, packing: RowPacking | None = None, per_token: bool = False) -> Any:
        inputs = {
            "input_ids": batch.input_ids,
            "position_ids": batch.position_ids,
            "attention_mask": attention_mask_for(self.model, batch.attention_mask, batch.position_ids),
        }
        logit_index = batch.logit_index
        if packing is not None:  # the decoder reads the real tokens only; attention runs on the rows
            inputs["input_ids"] = batch.input_ids.reshape(-1)[packing.tokens].unsqueeze(0)
            inputs["position_ids"] = batch.position_ids.reshape(-1)[packing.tokens].unsqueeze(0)
            logit_index = packing.slots.reshape(-1)[logit_index]
        values = None
        if self.chunked_head:
            hidden = self.model.get_decoder()(**inputs, use_cache=False).last_hidden_state
            hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, logit_index)
            head = self.model.get_output_embeddings()
            cached = cached_weight(head, compute_dtype(head.weight))  # a frozen head's bf16 copy (FrozenCasts)
            tok = linear_token_logprobs(
                hidden,
                head.weight if cached is None else cached,
                batch.target_ids,
                getattr(head, "bias", None),
                self.chunk_size,
            )
        else:
            out = self.model(**inputs, use_cache=False, output_hidden_states=self.value_head is not None and per_token)
            logits = out.logits.reshape(-1, out.logits.shape[-1]).index_select(0, logit_index)
            tok = token_logprobs(logits, batch.target_ids, self.chunk_size)
            if self.value_head is not None and per_token:
                hidden = out.hidden_states[-1]
                hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, logit_index)
        if per_token:
            if self.value_head is not None:
                values = self.value_head(hidden.float())
            return tok, values
        return segment_sum(tok, batch.sequence_index, batch.num_sequences)


def naive_sequence_logprobs(
    model: nn.Module, input_ids: Tensor, completion_mask: Tensor, attention_mask: Tensor | None = None
) -> Tensor:
    """Reference implementation (tests, debugging): full ``log_softmax`` over the vocabulary.

    ``completion_mask[r, t]`` marks tokens of row ``r`` whose log-prob counts; returns ``(R,)`` sums.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.float()
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * completion_mask[:, 1:].to(logp.dtype)).sum(-1)
