"""The rollout engine: one prefill per prompt shared by its n samples, continuous batching over a slot KV cache.

:func:`rollout` is what :func:`preflab.generation.sample` runs for the decoder-only architectures listed in
:data:`ENGINE_MODEL_TYPES` (it falls back to :mod:`.decode`'s loop, and that to Hugging Face ``generate``,
for the others). Compared with ``generate(num_return_sequences=n)`` it

* **prefills each prompt once** (a left-padded batch of prompts, Hugging Face's own attention; the start the
  batch's prompts share, such as a chat template's system turn, once for all of them: :mod:`.prefill`) and
  copies the prompt's keys and values into the KV rows of each of its ``n`` samples, instead of encoding the
  prompt ``n`` times;
* keeps a **slot KV cache**: per layer one preallocated ``[slots, kv_heads, capacity, head_dim]`` buffer; each
  row holds one sequence between its own start and end column, so sequences of different prompts and ages
  share a batch, and a decoding step writes every row's new key in place (no ``torch.cat`` of the cache);
* does **continuous batching**: a sequence that ends (stop token or ``max_new_tokens``) leaves its row at once
  and the row is refilled in place from the queue of pending samples (prefilling the next prompts when the
  queue of prefilled ones is empty), so the batch stays full until the queue runs dry; only then are the rows
  compacted (one cache copy once a quarter of them are empty);
* computes decoding attention (one query per row) as a grouped matmul over the row's valid columns: on a CPU
  PyTorch's fused SDPA kernel spends ~5 ms a layer on a one-token query with a mask at batch 64, half of a
  SmolLM2-135M decoding step (``bench/generation.py``);
* optionally returns every generated token's log-probability under the decoding weights, from the same pass
  (a float32 ``log_softmax`` of the logits the token was drawn from, before temperature and truncation).

Sampling (temperature, top-k, top-p, CDF inversion with one uniform per row) is :func:`.decode.draw`, the same
as the plain loop's. Draws consume torch's global generator, which :func:`~preflab.generation.sample` forks
and seeds, so a call is reproducible for the same prompts, parameters and weights. The engine reads the live
model's parameters at every step: after an optimiser update the next call samples from the updated policy
without any rebuild.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .slots import PrefillStore, SlotCache, _Prefilled

__all__ = [
    "ENGINE_MODEL_TYPES",
    "PrefillStore",
    "RolloutResult",
    "SlotCache",
    "engine_attention",
    "rollout",
    "supports_engine",
]

ENGINE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "granite", "olmo", "olmo2", "phi3"})
"""Architectures whose attention layers write their keys and values through ``cache.update`` and attend over
exactly what it returns (full causal attention, RoPE applied before the cache): the engine's slot cache and
grouped decoding attention are exact for them."""

_ATTN_PREFIX = "preflab_rollout_"


def supports_engine(model) -> bool:
    """Decoder-only models of :data:`ENGINE_MODEL_TYPES` without sliding-window attention."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "model_type", None) not in ENGINE_MODEL_TYPES:
        return False
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        return False
    sliding = getattr(config, "sliding_window", None)
    return sliding is None or getattr(config, "use_sliding_window", True) is False


def _decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """One query per row: softmax(q·Kᵀ·scale + mask)·V with the query heads grouped over their KV head.

    float32 keys and values: float32 throughout. bf16 ones: both products in bf16 with float32 accumulation, as
    transformers' eager attention computes them for a bf16 model (scores rounded to bf16, the scale, mask and
    softmax in float32, the probabilities rounded to bf16); the slot cache is read as it lies, with no float32
    copy per layer and step (which made the attention of a quickstart round 1.7x slower). That is within bf16's own
    precision: sampled tokens' log-probs differ from the float32 model's by 0.034 nats on average for SmolLM2,
    as much as transformers' own bf16 forward (``sdpa``) differs (0.034). Other dtypes are read as float32.

    The attention reads the first ``width`` columns (the mask's); ``key`` and ``value`` may be wider (the slot
    cache's whole rows, which need no copy), the columns past ``width`` are not attended."""
    import torch

    b, h, _, d = query.shape
    hkv = key.shape[1]
    width = attention_mask.shape[-1] if attention_mask is not None else key.shape[2]
    q = query.reshape(b, hkv, h // hkv, d)
    if key.dtype == torch.bfloat16 and value.dtype == torch.bfloat16:
        # K·qᵀ, not q·Kᵀ: the product reads the cache's rows in place (a transposed strided slice is copied first)
        scores = torch.matmul(key, q.to(key.dtype).transpose(-1, -2)).transpose(-1, -2)[..., :width].float()
    else:
        key, value = key[:, :, :width].float(), value.float()
        scores = torch.matmul(q.float(), key.transpose(-1, -2))
    scores = scores * (scaling if scaling is not None else d**-0.5)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = scores.softmax(-1).to(value.dtype)
    if value.shape[2] > width:
        probs = torch.nn.functional.pad(probs, (0, value.shape[2] - width))
    out = torch.matmul(probs, value)  # [b, hkv, groups, d]
    return out.reshape(b, 1, h, d).to(query.dtype), None


def _attention_name(original: str) -> str:
    """Register (once) an attention implementation that decodes with :func:`_decode_attention` and prefills
    with ``original`` (its mask function too)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = _ATTN_PREFIX + original
    if name in ALL_ATTENTION_FUNCTIONS:
        return name
    if original == "eager":
        from transformers.models.llama.modeling_llama import eager_attention_forward as prefill
    else:
        prefill = ALL_ATTENTION_FUNCTIONS[original]

    def attention(module, query, key, value, attention_mask, **kwargs):
        if query.shape[2] == 1 and getattr(attention_mask, "_preflab_slots", False):
            return _decode_attention(module, query, key, value, attention_mask, **kwargs)
        return prefill(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(name, attention)
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    return name


@contextlib.contextmanager
def engine_attention(model):
    """The model's config names the engine's attention implementation inside the block (restored after)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    original = config._attn_implementation or "eager"
    if original.startswith(_ATTN_PREFIX):
        yield
        return
    config._attn_implementation = _attention_name(original)
    try:
        yield
    finally:
        config._attn_implementation = original


@dataclass
class RolloutResult:
    """Per prompt, per sample: generated token ids (up to and including the stop token) and, on request,
    each token's log-probability."""

    tokens: list[list[list[int]]]
    token_logprobs: list[list[list[float]]] | None
    stats: dict = field(default_factory=dict)


def rollout(
    model,
    prompt_ids: list[list[int]],
    *,
    n: int,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    slots: int = 32,
    token_logprobs: bool = False,
    max_prefill_prompts: int = 16,
    lean=None,
    on_prompt_done: Callable[[int, list[list[int]], list[list[float]] | None], None] | None = None,
    prefills: PrefillStore | None = None,
) -> RolloutResult:
    """Sample ``n`` completions of every prompt (token id lists, no padding). ``slots`` = sequences decoded at
    once. Greedy decoding (``temperature == 0``) decodes each prompt once and repeats the result ``n`` times.
    ``on_prompt_done(i, tokens, token_logprobs)`` is called as soon as all of prompt i's samples have ended
    (progress, partial results), with the lists this call returns for it. ``lean``: a
    :class:`~preflab.generation.lean.LeanDecoder` of ``model`` that computes the decoding steps (the prefill
    stays the model's forward). ``prefills``: a :class:`PrefillStore` whose prompts are not prefilled again, and
    which keeps this call's prefills for the next."""
    import torch

    from .decode import _forward, cache_argument, draw
    from .prefill import prefill_prompts

    reps = 1 if temperature == 0 else n
    dev = model.device
    num = len(prompt_ids)
    tokens: list[list[list[int]]] = [[[] for _ in range(reps)] for _ in range(num)]
    lps: list[list[list[float]]] | None = [[[] for _ in range(reps)] for _ in range(num)] if token_logprobs else None
    capacity = max(len(p) for p in prompt_ids) + max_new_tokens
    # no more slots than sequences: 200 greedy prompts at a 256-row batch need 200 rows of K/V, not 256
    # (every row fits either way, so the prefills and decoding steps are the same)
    slots = max(1, min(slots, num * reps))
    cache = SlotCache(slots, capacity)
    cache_kw = cache_argument(model)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
    order = sorted(range(num), key=lambda i: (-len(prompt_ids[i]), i))  # similar lengths prefill together
    queue_pos = 0
    ready: list[_Prefilled] = []
    # per row (rows 0..A-1 of the cache): prompt and sample index (None: a hole left by a finished sequence),
    # start column, next write column, tokens generated, the token to feed next
    row_prompt: list[int | None] = []
    row_sample: list[int] = []
    start = torch.zeros(0, dtype=torch.long, device=dev)
    end = torch.zeros(0, dtype=torch.long, device=dev)
    count = torch.zeros(0, dtype=torch.long, device=dev)
    fed = torch.zeros(0, dtype=torch.long, device=dev)
    pending = [reps] * num  # samples of each prompt still decoding or queued

    def done(prompt: int) -> None:
        pending[prompt] -= 1
        if pending[prompt] == 0 and on_prompt_done is not None:
            got, got_lps = tokens[prompt], lps[prompt] if lps is not None else None
            if reps != n:
                got, got_lps = _n_times(got, n), None if got_lps is None else _n_times(got_lps, n)
            on_prompt_done(prompt, got, got_lps)

    stats = dict.fromkeys(
        ("prefill_calls", "prefill_tokens", "prefills_reused", "decode_steps", "decode_rows", "compactions"), 0
    )
    dtype = next(model.parameters()).dtype  # inside the sampler's bf16 cast, the dtype the prefill ran in

    def stored(i: int) -> _Prefilled | None:
        return prefills.take(dtype, prompt_ids[i], i, reps) if prefills is not None else None

    def prefill(k: int) -> None:
        nonlocal queue_pos
        picked = order[queue_pos : queue_pos + k]
        queue_pos += len(picked)
        entries = {i: e for i in picked if (e := stored(i)) is not None}
        stats["prefills_reused"] += len(entries)
        idx = [i for i in picked if i not in entries]
        if idx:
            entries.update(prefill_batch(idx))
        if not cache.keys:
            first = entries[picked[0]]
            cache.allocate_like(first.keys, first.values)
        ready.extend(entries[i] for i in picked)  # in queue order, reused or not: rows (and draws) as without reuse

    def prefill_batch(idx: list[int]) -> dict[int, _Prefilled]:
        pre = prefill_prompts(model, [prompt_ids[i] for i in idx], pad_id, cache_kw)
        keys, values, logits, width = pre.keys, pre.values, pre.logits, pre.width
        stats["prefill_calls"] += 1
        stats["prefill_tokens"] += pre.computed_tokens
        out = {}
        for r, i in enumerate(idx):
            out[i] = _Prefilled(i, reps, 0, r, keys, values, logits[r], width - len(prompt_ids[i]), width)
            if prefills is not None:
                prefills.put(dtype, prompt_ids[i], out[i])
        return out

    while True:
        # refill: holes first (in place, no cache copy), then new rows up to ``slots``
        holes = [r for r, p in enumerate(row_prompt) if p is None]
        fresh_rows: list[int] = []
        fresh_logits = []
        while (holes or len(row_prompt) < slots) and (ready or queue_pos < num):
            if not ready:
                free = len(holes) + slots - len(row_prompt)
                prefill(max(1, min(-(-free // reps), max_prefill_prompts)))
            entry = ready[0]
            take = min(len(holes) + slots - len(row_prompt), entry.remaining)
            rows, holes = holes[:take], holes[take:]
            extra = take - len(rows)
            if extra:
                rows += range(len(row_prompt), len(row_prompt) + extra)
                row_prompt += [None] * extra
                row_sample += [0] * extra
                pad = torch.zeros(extra, dtype=torch.long, device=dev)
                start, end, count, fed = (torch.cat([t, pad]) for t in (start, end, count, fed))
            index = torch.tensor(rows, dtype=torch.long, device=dev)
            cache.insert(index, entry.keys, entry.values, entry.src_row)
            for j, r in enumerate(rows):
                row_prompt[r] = entry.prompt
                row_sample[r] = entry.next_sample + j
            start[index], end[index], count[index] = entry.start, entry.width, 0
            fresh_rows += rows
            fresh_logits.append(entry.logits.expand(take, -1))
            entry.next_sample += take
            entry.remaining -= take
            if entry.remaining == 0:
                ready.pop(0)
        alive_list = [p is not None for p in row_prompt]
        if not any(alive_list):
            break
        alive = torch.tensor(alive_list, device=dev)
        fresh = torch.zeros(len(row_prompt), dtype=torch.bool, device=dev)
        if fresh_rows:
            fresh[torch.tensor(fresh_rows, dtype=torch.long, device=dev)] = True
        decoding = alive & ~fresh
        if bool(decoding.any()):
            # every row is fed (holes and fresh rows too: their logits are discarded, and a fresh row's write at
            # its next column is overwritten by its first real token at the next step)
            cache.write_cols = end
            cache.width = int(end.max()) + 1
            cols = torch.arange(cache.width, device=dev)
            valid = (cols >= start[:, None]) & (cols <= end[:, None])
            mask = torch.zeros(valid.shape, dtype=torch.float32, device=dev).masked_fill_(~valid, float("-inf"))
            mask = mask[:, None, None, :]
            mask._preflab_slots = True
            positions = (end - start).clamp(min=0)
            if lean is not None:
                logits = lean.step(fed, positions, cache, mask)
            else:
                logits = _forward(model, fed[:, None], mask, positions[:, None], cache, cache_kw)
            end = end + decoding.long()
            stats["decode_steps"] += 1
            stats["decode_rows"] += int(decoding.sum())
        else:
            logits = torch.zeros((len(row_prompt), fresh_logits[0].shape[-1]), dtype=fresh_logits[0].dtype, device=dev)
        if fresh_rows:
            logits[torch.tensor(fresh_rows, dtype=torch.long, device=dev)] = torch.cat(fresh_logits).to(logits.dtype)
        tok = draw(logits, temperature, top_k, top_p)
        count = count + alive.long()
        finished = alive & (torch.isin(tok, stops) | (count >= max_new_tokens))
        tok_list = tok.tolist()
        lp_list = None
        if lps is not None:
            lp_list = logits.float().log_softmax(-1).gather(-1, tok[:, None]).squeeze(-1).tolist()
        for r, t in enumerate(tok_list):
            if alive_list[r]:
                tokens[row_prompt[r]][row_sample[r]].append(t)
                if lp_list is not None:
                    lps[row_prompt[r]][row_sample[r]].append(lp_list[r])
        fed = tok
        if bool(finished.any()):
            for r in finished.nonzero().squeeze(-1).tolist():
                prompt, row_prompt[r] = row_prompt[r], None
                done(prompt)
            start = start.masked_fill(finished, 0)
            end = end.masked_fill(finished, 0)
            count = count.masked_fill(finished, 0)
        drained = not ready and queue_pos >= num
        dead = sum(p is None for p in row_prompt)
        if drained and dead and dead * 4 >= len(row_prompt):
            # the queue is empty: drop the holes once they are a quarter of the batch (one cache copy)
            keep = torch.tensor([r for r, p in enumerate(row_prompt) if p is not None], dtype=torch.long, device=dev)
            if keep.numel():
                cache.keep(keep, int(end.max()) + 1)
            kept = keep.tolist()
            row_prompt = [row_prompt[i] for i in kept]
            row_sample = [row_sample[i] for i in kept]
            start, end, count, fed = start[keep], end[keep], count[keep], fed[keep]
            stats["compactions"] += 1
    if reps != n:
        tokens = [_n_times(row, n) for row in tokens]
        if lps is not None:
            lps = [_n_times(row, n) for row in lps]
    return RolloutResult(tokens, lps, stats)


def _n_times(samples: list[list], n: int) -> list[list]:
    """Greedy decoding decodes a prompt once: its one sample, copied as its ``n`` samples."""
    return [samples[0][:] for _ in range(n)]
