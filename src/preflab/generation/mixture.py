"""Sampling from the geometric mixture π^μ ∝ π^{1−m} · π_ref^{m} of a policy and its reference (Nash-MD).

Nash-MD (Munos et al. 2023, "Nash Learning from Human Feedback", §5–7) plays the policy against opponents
drawn from the geometric mixture π^μ(y|x) ∝ π(y|x)^{1−βη} π_ref(y|x)^{βη}. Over whole sequences that
normaliser is intractable, so the paper's language-model experiments — and TRL's ``NashMDTrainer``
(``mixture_coef``) — mix per token: at every decoding step both models see the same prefix and the next
token is drawn from

    p_μ(v | x, y_<t) = softmax((1 − m) · log π(v | x, y_<t) + m · log π_ref(v | x, y_<t)),

the normalised geometric mixture of the two next-token distributions. :func:`mixture_decode` runs both
models with their own KV caches (the reference may be the policy itself with its LoRA adapters switched
off, through ``reference_context``), mixes their log-softmaxed logits, and draws with the decoder's own
:func:`~preflab.generation.decode.draw` (temperature, top-k, top-p applied to the mixed logits). ``m = 0``
is the policy, ``m = 1`` the reference. :func:`sample_mixture` wraps it like
:func:`~preflab.generation.sampler.sample` (chat template, left padding, seeded, ``n`` per prompt).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from .decode import _forward, cache_argument, draw
from .sampler import Completion, SamplingParams, eos_ids, render_prompts

__all__ = ["mixture_decode", "mixture_logits", "sample_mixture"]


def mixture_logits(policy_logits: Any, reference_logits: Any, mix: float) -> Any:
    """(1 − m) log_softmax(policy) + m log_softmax(reference), fp32: the log of the unnormalised geometric
    mixture of the two next-token distributions (its softmax is the normalised mixture)."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"the mixture coefficient must lie in [0, 1], got {mix}")
    lp = policy_logits.float().log_softmax(-1)
    if mix == 0.0:
        return lp
    lr = reference_logits.float().log_softmax(-1)
    if mix == 1.0:
        return lr
    return (1.0 - mix) * lp + mix * lr


def mixture_decode(
    policy: Any,
    reference: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    mix: float,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: Any = None,
    reference_context: Callable[[], Any] | None = None,
    on_step: Callable[[int, Any, Any], None] | None = None,
) -> Any:
    """Generated tokens ``[batch, max_new_tokens]`` drawn token by token from the geometric mixture of
    ``policy`` and ``reference`` (module docstring); each row up to and including its first stop token,
    ``pad_id`` after. ``input_ids``: left-padded prompts with their ``attention_mask``.

    ``reference_context`` (e.g. a peft model's ``disable_adapter``) is entered around every reference forward.
    ``on_step(t, rows, logits)`` sees the mixed logits of step t for the original ``rows`` still decoding.
    Finished rows leave both KV caches at once."""
    import torch
    from transformers import DynamicCache

    ref_ctx = reference_context or contextlib.nullcontext
    dev = input_ids.device
    batch = input_ids.shape[0]
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=dev)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=dev)
    alive = torch.arange(batch, device=dev)
    mask = attention_mask.long()
    pos = (mask.cumsum(-1) - 1).clamp_(min=0)
    caches = (DynamicCache(), DynamicCache())
    kws = (cache_argument(policy), cache_argument(reference))

    def logits_of(ids: Any, m: Any, p: Any) -> Any:
        lp = _forward(policy, ids, m, p, caches[0], kws[0]) if mix < 1.0 else None
        lr = None
        if mix > 0.0:
            with ref_ctx():
                lr = _forward(reference, ids, m, p, caches[1], kws[1])
        if lp is None:
            return mixture_logits(lr, lr, 1.0)
        return mixture_logits(lp, lr if lr is not None else lp, mix)

    logits = logits_of(input_ids, mask, pos)
    next_pos = pos[:, -1] + 1
    for t in range(max_new_tokens):
        if on_step is not None:
            on_step(t, alive, logits)
        tok = draw(logits, temperature, top_k, top_p, generator)
        out[alive, t] = tok
        done = torch.isin(tok, stops)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(-1)
            for cache in caches:
                if cache.get_seq_length() > 0:
                    cache.batch_select_indices(keep)
            alive, tok, mask, next_pos = alive[keep], tok[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        logits = logits_of(tok[:, None], mask, next_pos[:, None])
        next_pos = next_pos + 1
    return out


def sample_mixture(
    policy: Any,
    tokenizer: Any,
    prompts: list[Any],
    params: SamplingParams,
    *,
    mix: float,
    reference: Any = None,
    reference_context: Callable[[], Any] | None = None,
) -> list[list[Completion]]:
    """``params.n`` completions per prompt from the per-token geometric mixture π^{1−m} π_ref^{m}
    (``reference`` = None: the policy itself under ``reference_context``, i.e. a LoRA policy with its adapters
    off). Seeded like :func:`~preflab.generation.sampler.sample` (a forked RNG, the caller's state untouched);
    decoding runs in the models' own dtype (with bf16 autocast on a bf16 GPU when ``params.bf16`` allows)."""
    import torch

    from ..models.loading import forked_rng

    if not prompts:
        return []
    reference = policy if reference is None else reference
    texts = render_prompts(tokenizer, prompts)
    stop = eos_ids(policy, tokenizer, params.stop_token_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    per_call = max(1, params.batch_size // params.n)
    results: list[list[Completion]] = [[] for _ in texts]
    dev = policy.device
    gpu_autocast = dev.type == "cuda" and params.bf16 is not False and torch.cuda.is_bf16_supported()
    with forked_rng(dev):
        torch.manual_seed(params.seed)
        for start in range(0, len(texts), per_call):
            idx = list(range(start, min(start + per_call, len(texts))))
            old_side = tokenizer.padding_side
            tokenizer.padding_side = "left"
            try:
                enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            finally:
                tokenizer.padding_side = old_side
            ids = enc["input_ids"].to(dev).repeat_interleave(params.n, dim=0)
            mask = enc["attention_mask"].to(dev).repeat_interleave(params.n, dim=0)
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu_autocast):
                new = mixture_decode(
                    policy,
                    reference,
                    ids,
                    mask,
                    mix=mix,
                    max_new_tokens=params.max_new_tokens,
                    stop_ids=stop,
                    pad_id=pad_id,
                    temperature=params.temperature,
                    top_k=params.top_k,
                    top_p=params.top_p,
                    reference_context=reference_context,
                )
            is_stop = torch.isin(new, torch.tensor(stop, device=new.device))
            after = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
            for row in range(new.shape[0]):
                token_ids = new[row][~after[row]].tolist()
                reason = "stop" if token_ids and token_ids[-1] in stop else "length"
                results[idx[row // params.n]].append(
                    Completion(
                        text=tokenizer.decode(token_ids, skip_special_tokens=True).strip(),
                        token_ids=token_ids,
                        finish_reason=reason,
                        metadata={"mixture": mix},
                    )
                )
    return results
