"""The sampler's decoding loop: KV-cached, left-padded batches that shrink as rows finish.

Hugging Face ``generate`` keeps every row of a batch until the last one ends and draws each token with
``torch.multinomial``, whose CPU kernel fills one exponential variate per vocabulary entry (49,152 per
row and step for SmolLM2: ~60 ms a step at batch 64 on this project's CPU, a fifth of the step). This
loop instead

* drops finished rows from the batch (and from the KV cache, ``Cache.batch_select_indices``), so a batch
  costs what its *unfinished* rows cost: completions that stop at EOS free their compute at once;
* samples by inversion with one uniform per row (:func:`invert`: the block of tokens, then the token), an
  exact draw from the same categorical distribution;
* applies temperature, top-k and top-p with Hugging Face's semantics (``TopKLogitsWarper``,
  ``TopPLogitsWarper``: the smallest set of most likely tokens whose mass reaches ``top_p``, at least one
  token); ``temperature == 0`` is greedy decoding (argmax; the tests check it against ``generate``).

Position ids follow the attention mask (``cumsum(mask) - 1``), as ``generate`` computes them for left
padding. Any decoder-only model whose forward takes ``attention_mask``, ``position_ids`` and
``past_key_values`` works; :func:`supports_decode` says whether a model qualifies (others fall back to
``generate``).
"""

from __future__ import annotations

import inspect


def supports_decode(model) -> bool:
    """Decoder-only models whose forward takes position ids and a cache (every HF causal LM does)."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return False
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    has_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return has_kwargs or {"position_ids", "past_key_values", "attention_mask"} <= set(params)


def filter_logits(logits, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """Scaled, top-k- and top-p-filtered logits (float32; removed tokens are ``-inf``)."""
    import torch

    logits = logits.to(torch.float32, copy=True).div_(temperature)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill_(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # mass of the strictly more likely tokens
        drop_sorted = mass_before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill_(drop, float("-inf"))
    return logits


BLOCK = 256
"""Tokens per block of the two-level inversion in :func:`invert`."""


def invert(probs, u):
    """The token whose CDF interval holds ``u`` times the row's mass, for each row of ``probs`` (``[rows, vocab]``,
    non-negative, not necessarily normalised; ``u``: ``[rows, 1]`` uniforms in ``[0, 1)``): inversion sampling in
    two levels, the block of :data:`BLOCK` tokens first (a cumulative sum over block masses), then the token
    inside it. Two short cumulative sums instead of one over the whole vocabulary (a row-wise ``cumsum`` over
    49,152 entries was 5% of a decoding step); a zero-probability token is never returned, whatever the
    rounding."""
    import torch

    rows, vocab = probs.shape
    pad = -vocab % BLOCK
    if pad:
        probs = torch.nn.functional.pad(probs, (0, pad))
    blocks = probs.view(rows, -1, BLOCK)
    mass = blocks.sum(-1)
    cdf = mass.cumsum(-1)
    u = u * cdf[:, -1:]
    last = mass.shape[1] - 1
    b = torch.searchsorted(cdf, u, right=True).clamp_(max=last)
    b = torch.where(mass.gather(1, b) > 0, b, (mass > 0).cumsum(-1).argmax(-1, keepdim=True))  # rounding guard
    inner = blocks[torch.arange(rows, device=probs.device), b.squeeze(-1)]  # [rows, BLOCK]
    inner_cdf = inner.cumsum(-1)
    top = inner_cdf[:, -1:]
    r = (u - (cdf.gather(1, b) - mass.gather(1, b))).clamp_(min=0.0)
    r = torch.minimum(r, top * (1 - 2**-20))  # strictly inside the block's mass: never past its last token
    t = torch.searchsorted(inner_cdf, r, right=True).clamp_(max=BLOCK - 1)
    return (b * BLOCK + t).squeeze(-1)


def draw(logits, temperature: float, top_k: int = 0, top_p: float = 1.0, generator=None):
    """One token per row: argmax when ``temperature == 0``, else an exact draw by CDF inversion (:func:`invert`)."""
    import torch

    if temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device)
    return invert(probs, u)


def cache_argument(model) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers ≥ 5.24; ``past_key_values`` is deprecated
    there and warns) or ``past_key_values`` (earlier releases). A PEFT wrapper is looked through."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def last_logits(model, input_ids, **kwargs):
    """The last position's logits ``[batch, vocab]`` of ``model(input_ids=..., **kwargs)``, without the others'.

    The last position is asked for by index (a tensor), not as ``logits_to_keep=1``: the model then gathers a
    contiguous ``[batch, 1, hidden]`` copy, which torch's matmul folds into one product with the output head. The
    int keeps a strided view of the hidden states, and where the head's weight does not require grad (a model
    loaded for inference, a frozen base) matmul broadcasts that weight to ``[batch, hidden, vocab]`` and copies
    it: 0.9 GB per prefill of 16 prompts for SmolLM2 in bf16, 2.7x the prefill's own time. A forward without
    ``logits_to_keep`` computes every position's logits."""
    import torch

    index = torch.tensor([input_ids.shape[1] - 1], device=input_ids.device)
    try:
        out = model(input_ids=input_ids, logits_to_keep=index, **kwargs)
    except TypeError:  # a forward without logits_to_keep
        out = model(input_ids=input_ids, **kwargs)
    return out.logits[:, -1]


def _forward(model, ids, mask, pos, cache, cache_kw: str):
    """Last-position logits (:func:`last_logits`); ``cache`` (a transformers ``Cache``) is updated in place."""
    return last_logits(model, ids, attention_mask=mask, position_ids=pos, use_cache=True, **{cache_kw: cache})


def decode(
    model,
    input_ids,
    attention_mask,
    *,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator=None,
    compact: bool = True,
):
    """Generated tokens ``[batch, max_new_tokens]``: each row up to and including its first stop token,
    ``pad_id`` after it. ``input_ids`` are left-padded prompts with their ``attention_mask``."""
    import torch
    from transformers import DynamicCache

    dev = input_ids.device
    batch = input_ids.shape[0]
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=dev)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
    alive = torch.arange(batch, device=dev)  # original row of every row still decoding
    mask = attention_mask.long()
    pos = (mask.cumsum(-1) - 1).clamp_(min=0)
    cache, cache_kw = DynamicCache(), cache_argument(model)  # the signature is read once, not per token
    logits = _forward(model, input_ids, mask, pos, cache, cache_kw)
    next_pos = pos[:, -1] + 1
    done = torch.zeros(batch, dtype=torch.bool, device=dev)
    for t in range(max_new_tokens):
        tok = draw(logits, temperature, top_k, top_p, generator)
        if not compact:
            tok = tok.masked_fill(done, pad_id)
        out[alive, t] = tok
        done = done | torch.isin(tok, stops)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if compact and bool(done.any()):
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            alive, tok, mask, next_pos, done = alive[keep], tok[keep], mask[keep], next_pos[keep], done[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        logits = _forward(model, tok[:, None], mask, next_pos[:, None], cache, cache_kw)
        next_pos = next_pos + 1
    return out
