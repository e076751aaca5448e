"""Language-model helpers for evaluation: sampling that keeps token ids, sequence log-probs, sampled KL.

Sequence log-probs come from the one scorer (:func:`preflab.models.scoring.score_completions`, which runs the
training :class:`~preflab.models.logprobs.SequenceScorer`); no full-vocabulary log-softmax tensor is built.
Sampling for KL estimation keeps the exact token ids drawn (no decode/re-encode round trip) and stops each
sequence at its first end-of-sequence token, which is included in the completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .kl import KLEstimate, estimate_kl


@dataclass
class Samples:
    """Sampled completions: prompt ids, completion ids (EOS included when reached) and decoded text."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    prompt_index: list[int]  # which prompt each sample answers
    logprobs: list[float] | None = None
    """log π(y|x) of each completion from the sampling pass itself, when that is exact
    (:func:`preflab.generation.sampler.pass_logprobs_exact`); None otherwise."""


def chat_prompt_ids(tokenizer, prompt) -> list[int]:
    """Token ids of a prompt rendered through the chat template with the generation prompt."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def completion_ids(tokenizer, completion: str, add_eos: bool = True) -> list[int]:
    """Token ids of an answer, followed by the end-of-turn token as the chat template would close it."""
    ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return ids


def _stop_ids(model, tokenizer) -> set[int]:
    ids = set()
    for src in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if src is None:
            continue
        ids.update(int(i) for i in (src if isinstance(src, list | tuple) else [src]))
    return ids


def sequence_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    bf16: bool = False,
) -> np.ndarray:
    """``log π(y | x)``: the sum of completion token log-probs, one float64 per (prompt, completion).

    :func:`preflab.models.scoring.score_completions` (the training scorer; ``bf16`` = under bf16 autocast).
    """
    from ..models.scoring import score_completions

    return score_completions(model, prompt_ids, completion_ids, batch_size=batch_size, bf16=bf16)


def sample_completions(
    model,
    tokenizer,
    prompts: Sequence,
    *,
    n_per_prompt: int = 1,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    bf16: bool = False,
    logprobs: bool = False,
    prefills=None,
) -> Samples:
    """Sample ``n_per_prompt`` completions per prompt, keeping the exact token ids drawn.

    ``temperature == 1`` and ``top_p == 1`` (the defaults) sample from π itself, which KL estimation
    needs; top-k truncation is always off. Reproducible by ``seed``. Decoding is
    :func:`preflab.generation.sample` (``bf16`` True = its bf16 decoding where supported: bf16 weights
    on a bf16-capable CPU, autocast on a GPU). With ``logprobs``, :attr:`Samples.logprobs` holds each
    completion's log π(y|x) summed from the sampling pass when that is exact (the rollout engine in the model's
    own weights at temperature 1, no truncation), and stays None otherwise (score them instead). ``prefills``:
    :func:`preflab.generation.sample`'s store of prompts already prefilled by this model.
    """
    from ..generation import SamplingParams, sample
    from ..generation.sampler import pass_logprobs_exact

    params = SamplingParams(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        seed=seed,
        n=n_per_prompt,
        batch_size=batch_size,
        bf16=None if bf16 else False,
        stop_token_ids=tuple(sorted(_stop_ids(model, tokenizer))),
    )
    exact = logprobs and pass_logprobs_exact(model, params)
    params.return_token_logprobs = exact
    rows = sample(model, tokenizer, list(prompts), params, prefills=prefills)
    p_ids = [chat_prompt_ids(tokenizer, p) for p in prompts]
    flat = [(i, c) for i, row in enumerate(rows) for c in row]
    return Samples(
        [p_ids[i] for i, _ in flat],
        [list(c.token_ids) for _, c in flat],
        [c.text for _, c in flat],
        [i for i, _ in flat],
        [float(sum(c.token_logprobs)) for _, c in flat] if exact else None,
    )


def policy_logprobs(policy, samples: Samples, *, batch_size: int = 8, bf16: bool = False) -> np.ndarray:
    """log π(y|x) of the samples: from the sampling pass when it was exact (``samples.logprobs``), else scored
    (``bf16``: under bf16 autocast)."""
    if samples.logprobs is not None:
        return np.asarray(samples.logprobs, dtype=np.float64)
    return sequence_logprobs(policy, samples.prompt_ids, samples.completion_ids, batch_size=batch_size, bf16=bf16)


def reference_bf16(samples: Samples, bf16: bool) -> bool:
    """Whether to score the reference under bf16 autocast: as the policy's log-probs were computed, so that the
    log-ratio compares like with like (the pass's exact log-probs are in the model's own dtype)."""
    return bf16 and samples.logprobs is None


def sample_kl(
    policy,
    reference,
    tokenizer,
    prompts: Sequence,
    *,
    n_per_prompt: int = 1,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 8,
    bf16: bool = False,
    samples: Samples | None = None,
    score_batch_size: int | None = None,
) -> tuple[KLEstimate, Samples]:
    """KL(π‖π_ref) from completions sampled from ``policy`` at temperature 1 (or given ``samples``).

    The policy's log π(y|x) come from the sampling pass when they are exact there (``samples.logprobs``: the
    rollout engine decoding in the policy's own weights), and only the reference is scored, in the same
    numerics (the model's own dtype); otherwise both are scored (``bf16``: under bf16 autocast). Either way the
    estimates are :func:`~preflab.evaluation.kl.estimate_kl`'s k1 / k3 of the same sequence log-ratios. The
    standard error is cluster-robust over prompts when ``n_per_prompt > 1``. ``score_batch_size`` = sequences
    per scoring forward (default ``batch_size``).
    """
    if samples is None:
        samples = sample_completions(
            policy,
            tokenizer,
            prompts,
            n_per_prompt=n_per_prompt,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            bf16=bf16,
            logprobs=True,
        )
    bs = score_batch_size or batch_size
    lp = policy_logprobs(policy, samples, batch_size=bs, bf16=bf16)
    lr = sequence_logprobs(
        reference, samples.prompt_ids, samples.completion_ids, batch_size=bs, bf16=reference_bf16(samples, bf16)
    )
    lengths = [len(c) for c in samples.completion_ids]
    clusters = samples.prompt_index if n_per_prompt > 1 else None
    return estimate_kl(lp, lr, lengths=lengths, clusters=clusters), samples
