"""The rollout engine's prefill of a batch of prompts: left-padded, the start they share computed once.

Chat prompts open alike: SmolLM2's template puts its default system turn, 24 tokens, before every user turn (about
half of a quickstart prompt). :func:`prefill_prompts` runs that shared start once as a one-row forward, repeats its
keys and values over the batch as the cache the rest of each prompt attends to, and runs the rests left-padded
(positions continuing from the start's). Each row's columns are then put back in the engine's order — padding,
then the prompt — so the slot cache reads a prefill as if it had been one left-padded forward. Keys, values and
logits equal that forward's up to the order of float sums (a smaller batch of the same products).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Share a start only when it saves at least this many token positions (a second forward costs a little).
MIN_SAVED_TOKENS = 64


@dataclass
class PromptPrefill:
    keys: list  # per layer [rows, kv_heads, width, head_dim]: row r's prompt in its last len(prompt) columns
    values: list
    logits: Any  # [rows, vocab], the last prompt token's
    width: int
    computed_tokens: int  # token positions the forwards computed (the shared start once)


def shared_start(prompts: list[list[int]]) -> int:
    """Leading tokens every prompt has, leaving each at least one token of its own (whose logits are wanted)."""
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    k = 0
    while k < limit and all(p[k] == first[k] for p in prompts):
        k += 1
    return k


def prefill_prompts(model, prompts: list[list[int]], pad_id: int, cache_kw: str) -> PromptPrefill:
    """One prefill of ``prompts`` (token id lists, each non-empty): the KV of every layer and the last logits."""
    import torch
    from transformers import DynamicCache

    from .decode import _forward

    dev = model.device
    rows = len(prompts)
    shared = shared_start(prompts) if rows > 1 else 0
    if shared * (rows - 1) < MIN_SAVED_TOKENS:
        shared = 0
    rests = [p[shared:] for p in prompts]
    width = max(len(p) for p in rests)
    ids = torch.full((rows, width), pad_id, dtype=torch.long, device=dev)
    mask = torch.zeros((rows, width), dtype=torch.long, device=dev)
    for r, p in enumerate(rests):
        ids[r, width - len(p) :] = torch.tensor(p, device=dev)
        mask[r, width - len(p) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp_(min=0) + shared
    cache = DynamicCache()
    if shared:
        start = torch.tensor([prompts[0][:shared]], dtype=torch.long, device=dev)
        ones = torch.ones((1, shared), dtype=torch.long, device=dev)
        _forward(model, start, ones, torch.arange(shared, device=dev)[None], cache, cache_kw)
        for layer in cache.layers:  # every row attends to the one start
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
        mask = torch.cat([ones.expand(rows, -1), mask], 1)
    logits = _forward(model, ids, mask, pos, cache, cache_kw)
    keys = [layer.keys for layer in cache.layers]
    values = [layer.values for layer in cache.layers]
    if shared:  # [start | padding | rest] -> [padding | start | rest], row by row
        order = torch.empty((rows, shared + width), dtype=torch.long, device=dev)
        for r, p in enumerate(rests):
            pad = width - len(p)
            order[r] = torch.cat(
                [
                    torch.arange(shared, shared + pad, device=dev),
                    torch.arange(shared, device=dev),
                    torch.arange(shared + pad, shared + width, device=dev),
                ]
            )

        def reorder(t):
            return t.gather(2, order[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))

        keys, values = [reorder(k) for k in keys], [reorder(v) for v in values]
    computed = shared + int(mask[:, shared:].sum())
    return PromptPrefill(keys, values, logits, shared + width, computed)
