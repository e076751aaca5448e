"""Batched sampling from a causal LM, reproducible by seed: the rollout engine (:mod:`.engine`), the plain
decoding loop (:mod:`.decode`) or Hugging Face ``generate``, chosen by ``SamplingParams.engine``.

:func:`sample` answers each prompt (a string or a chat message list, rendered through the tokenizer's
chat template) with ``n`` completions and returns, for each, the text, the completion token ids (up to
and including the EOS token that ended it) and, on request, the sequence log-probability
``log π(y|x) = Σ_t log π(y_t | x, y_<t)`` under the model's own distribution (temperature 1, no top-p
truncation: the quantity that DPO / policy-gradient objectives need, not the sampling distribution).

Reproducibility: one ``seed`` seeds torch's generator (in a forked RNG state, so the caller's global
state is untouched). The same prompts, parameters and model give the same completions; a prompt's
completions may change with the *other* prompts in its batch, and with ``batch_size`` (sampling draws one
random tensor per step for the whole batch, and the rollout engine's rows depend on which sequences share
them), as in every batched sampler.

The prompts' rendering and checks live in :mod:`.prompts`, the decoding dtype in :mod:`.precision`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError
from .decode import decode, supports_decode
from .engine import engine_attention, rollout, supports_engine
from .lean import lean_decoder
from .packed import packed_linears
from .precision import bf16_autocast_ok, bf16_weights, casts_weights, cpu_bf16_supported, decodes_own_weights
from .prompts import chat_messages, check_context, context_length, eos_ids, render_prompts

ENGINES = ("auto", "rollout", "loop", "generate")
__all__ = [  # the prompt and precision helpers are imported from here by callers
    "ENGINES",
    "Completion",
    "SamplingParams",
    "bf16_autocast_ok",
    "bf16_weights",
    "casts_weights",
    "chat_messages",
    "check_context",
    "context_length",
    "cpu_bf16_supported",
    "decodes_own_weights",
    "eos_ids",
    "generate_chat",
    "pass_logprobs_exact",
    "pick_engine",
    "render_prompts",
    "sample",
]


@dataclass
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding (and ``n`` identical completions)."""

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0
    n: int = 1
    """Completions per prompt."""
    top_k: int = 0
    """0 disables top-k (Hugging Face's own default of 50 is *not* applied)."""
    batch_size: int = 32
    """Sequences decoded at once: the rollout engine's rows (its slot KV cache holds this many sequences); the
    ``loop`` and ``generate`` engines take ``max(1, batch_size // n)`` prompts per call."""
    return_logprobs: bool = False
    """Also compute each completion's summed log-prob under the model (one extra forward pass)."""
    stop_token_ids: tuple[int, ...] = ()
    """Extra token ids that end a completion, besides the tokenizer's and generation config's EOS."""
    bf16: bool | None = None
    """bf16 decoding. On a CUDA GPU with bf16: autocast. On a CPU with bf16 matmul support (AMX /
    AVX-512 BF16): the weights are cast to bf16 for the call and restored after (autocast would re-cast
    every weight at every decoding step). None = where bf16 pays: supported, and the timed probe
    :func:`preflab.models.bf16.cpu_bf16_pays` finds bf16 matmuls faster than fp32 (on AMX Xeons bf16 weights
    decode ~2.4x faster than fp32; on a Xeon whose AMX the VM hides, fp32 decodes 1.3x faster at batch 256,
    bench/generation.py); True = wherever supported (an error-free no-op where unsupported); False = never
    (the model's own dtype)."""
    engine: str = "auto"
    """Decoding loop: ``"rollout"`` (:mod:`.engine`: one prefill per prompt, continuous batching, slot KV
    cache), ``"loop"`` (:mod:`.decode`: a left-padded batch whose finished rows leave), ``"generate"`` (Hugging
    Face ``generate``, the reference) or ``"auto"``: the first of these the model supports."""
    lean: bool = True
    """The rollout engine on a CPU decodes Llama-family models (:data:`preflab.generation.lean.LEAN_MODEL_TYPES`)
    with :mod:`.lean`'s step (stacked, prepacked projections; no framework overhead); False = the model's own
    forward at every step (the reference)."""
    return_token_logprobs: bool = False
    """Also return each generated token's log-prob under the decoding weights, from the decoding pass itself
    (:attr:`Completion.token_logprobs`; the rollout engine only)."""

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.n >= 1, "n", "must be >= 1"),
            (self.top_k >= 0, "top_k", "must be >= 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.engine in ENGINES, "engine", f"must be one of {', '.join(ENGINES)}"),
        ]
        for ok, name, msg in checks:
            if not ok:
                raise ConfigError(f"{msg} (got {getattr(self, name)!r})", field=f"sampling.{name}")


@dataclass
class Completion:
    """One sampled answer. ``finish_reason`` is ``"stop"`` (an EOS ended it) or ``"length"``."""

    text: str
    token_ids: list[int]
    finish_reason: str
    logprob: float | None = None
    metadata: dict = field(default_factory=dict)
    token_logprobs: list[float] | None = None
    """Per generated token, log π(token | prefix) under the decoding weights (``return_token_logprobs``)."""

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def pick_engine(model, engine: str = "auto") -> str:
    """The decoding loop :func:`sample` runs: the requested one, or for ``"auto"`` the first the model supports
    of rollout engine, own loop, ``generate``."""
    if engine == "rollout" and not supports_engine(model):
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ConfigError(
            f"the rollout engine does not support model type '{model_type}' (use engine: loop or generate)",
            field="sampling.engine",
        )
    if engine == "loop" and not supports_decode(model):
        raise ConfigError(
            "this model's forward takes no KV cache / position ids (use engine: generate)", field="sampling.engine"
        )
    if engine != "auto":
        return engine
    if supports_engine(model):
        return "rollout"
    return "loop" if supports_decode(model) else "generate"


def pass_logprobs_exact(model, params: SamplingParams) -> bool:
    """Whether the per-token log-probs of a :func:`sample` call (``return_token_logprobs``) are log π(y_t | ·) of
    the model itself for tokens drawn from π itself: the rollout engine, the model's own weights
    (:func:`decodes_own_weights`), temperature 1, no top-p / top-k truncation. What a sampled KL estimate needs."""
    plain = params.temperature == 1.0 and params.top_p == 1.0 and params.top_k == 0
    return plain and pick_engine(model, params.engine) == "rollout" and decodes_own_weights(model, params.bf16)


def sample(
    model,
    tokenizer,
    prompts: list,
    params: SamplingParams | None = None,
    *,
    on_prompt_done: Callable[[int, list[Completion]], None] | None = None,
    prefills=None,
) -> list[list[Completion]]:
    """Sample ``params.n`` completions for every prompt; result ``[i][j]`` is prompt i's j-th completion.

    ``on_prompt_done(i, completions)`` is called once per prompt with its completions as soon as they are all
    done (the rollout engine finishes prompts out of order; the batch paths batch by batch): progress displays
    and partial results. When sequence log-probs must be rescored (``return_logprobs`` with cast weights) the
    calls come after the rescoring, at the end. ``prefills``: a
    :class:`~preflab.generation.engine.PrefillStore` shared by calls that sample the same prompts from the same
    model (the rollout engine prefills each prompt once across them; other engines ignore it).

    Checks the whole request first (chat template, every prompt's length against the model's context) and
    raises a one-line :class:`~preflab.errors.ConfigError` before any decoding."""
    import torch

    from ..models.loading import forked_rng

    params = params or SamplingParams()
    if not prompts:
        return []
    texts = render_prompts(tokenizer, prompts)
    stop = eos_ids(model, tokenizer, params.stop_token_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    check_context(model, prompt_ids, params.max_new_tokens)
    engine = pick_engine(model, params.engine)
    if params.return_token_logprobs and engine != "rollout":
        raise ConfigError(
            f"per-token log-probs come from the rollout engine only (engine: {engine})",
            field="sampling.return_token_logprobs",
        )
    if engine != "rollout":
        return _sample_batches(
            model, tokenizer, texts, prompt_ids, params, stop, pad_id, engine == "loop", on_prompt_done
        )
    exact = decodes_own_weights(model, params.bf16)
    want_token_lps = params.return_token_logprobs or (params.return_logprobs and exact)
    gpu_autocast = model.device.type == "cuda" and bf16_autocast_ok(model, params.bf16)
    rescore = params.return_logprobs and not exact  # decoded with cast weights: score under the model's own dtype
    results: list[list[Completion] | None] = [None] * len(prompts)

    def completions(tokens: list[list[int]], lps: list[list[float]] | None, seq_lps=None) -> list[Completion]:
        comps = []
        for j, ids in enumerate(tokens):
            tlp = lps[j] if lps is not None else None
            logprob = None
            if params.return_logprobs:
                logprob = seq_lps[j] if seq_lps is not None else float(sum(tlp))
            comps.append(
                Completion(
                    text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
                    token_ids=ids,
                    finish_reason="stop" if ids and ids[-1] in stop else "length",
                    logprob=logprob,
                    token_logprobs=tlp if params.return_token_logprobs else None,
                )
            )
        return comps

    def finished(i: int, tokens: list[list[int]], lps: list[list[float]] | None) -> None:
        results[i] = completions(tokens, lps)
        if on_prompt_done is not None:
            on_prompt_done(i, results[i])

    with forked_rng(model.device):
        torch.manual_seed(params.seed)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.no_grad())
            stack.enter_context(bf16_weights(model, params.bf16))
            lean = (
                lean_decoder(model, rows_hint=params.batch_size) if params.lean and model.device.type == "cpu" else None
            )
            if lean is None:  # the lean step packs its own (stacked) weights
                stack.enter_context(packed_linears(model, rows_hint=params.batch_size))
            stack.enter_context(torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=gpu_autocast))
            stack.enter_context(engine_attention(model))
            res = rollout(
                model,
                prompt_ids,
                n=params.n,
                max_new_tokens=params.max_new_tokens,
                stop_ids=stop,
                pad_id=pad_id,
                temperature=params.temperature,
                top_k=params.top_k,
                top_p=params.top_p,
                slots=params.batch_size,
                token_logprobs=want_token_lps,
                lean=lean,
                on_prompt_done=None if rescore else finished,
                prefills=prefills,
            )
    if rescore:
        seq_lps = _rescore(model, prompt_ids, res.tokens, params)
        for i, row in enumerate(res.tokens):
            lps = res.token_logprobs[i] if res.token_logprobs is not None else None
            results[i] = completions(row, lps, seq_lps[i])
            if on_prompt_done is not None:
                on_prompt_done(i, results[i])
    return [r if r is not None else [] for r in results]


def _rescore(model, prompt_ids, tokens, params: SamplingParams) -> list[list[float]]:
    """Summed completion log-probs in the model's own dtype (``batch_size`` sequences per forward)."""
    from ..models.scoring import score_completions

    flat = [(i, j) for i, row in enumerate(tokens) for j in range(len(row))]
    sums = score_completions(
        model,
        [prompt_ids[i] for i, _ in flat],
        [tokens[i][j] for i, j in flat],
        batch_size=params.batch_size,
        bf16=bf16_autocast_ok(model, params.bf16),
    )
    out = [[0.0] * len(row) for row in tokens]
    for (i, j), lp in zip(flat, sums, strict=True):
        out[i][j] = float(lp)
    return out


def _sample_batches(
    model,
    tokenizer,
    texts,
    prompt_ids,
    params: SamplingParams,
    stop,
    pad_id: int,
    own_loop: bool,
    on_prompt_done: Callable[[int, list[Completion]], None] | None = None,
) -> list[list[Completion]]:
    """The batch-at-a-time paths: the plain decoding loop (:func:`.decode.decode`) or ``generate``."""
    import torch

    from ..models.loading import forked_rng
    from .logprobs import completion_logprobs

    per_call = max(1, params.batch_size // params.n)
    # Longest prompts first: similar lengths share a batch (less padding); order restored below.
    lengths = [len(ids) for ids in prompt_ids]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    results: list[list[Completion] | None] = [None] * len(texts)
    kwargs = _generate_kwargs(params, stop, pad_id)
    with forked_rng(model.device):
        torch.manual_seed(params.seed)
        for start in range(0, len(order), per_call):
            idx = order[start : start + per_call]
            enc = _encode_left(tokenizer, [texts[i] for i in idx], model.device)
            reps = 1 if params.temperature == 0 else params.n  # greedy: decode once, repeat
            gpu_autocast = model.device.type == "cuda" and bf16_autocast_ok(model, params.bf16)
            with (
                torch.no_grad(),
                bf16_weights(model, params.bf16),
                torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=gpu_autocast),
            ):
                if own_loop:
                    ids, mask = (enc[k].repeat_interleave(reps, dim=0) for k in ("input_ids", "attention_mask"))
                    new = decode(
                        model,
                        ids,
                        mask,
                        max_new_tokens=params.max_new_tokens,
                        stop_ids=stop,
                        pad_id=pad_id,
                        temperature=params.temperature,
                        top_k=params.top_k,
                        top_p=params.top_p,
                    )
                    out = torch.cat([enc["input_ids"].repeat_interleave(reps, dim=0), new], dim=1)
                else:
                    out = model.generate(**enc, **kwargs)
            if params.temperature == 0 and params.n > 1:
                out = out.repeat_interleave(params.n, dim=0)
            prompt_len = enc["input_ids"].shape[1]
            new = out[:, prompt_len:]
            comp_mask = _completion_mask(new, stop)
            logps = None
            if params.return_logprobs:
                prompt_mask = enc["attention_mask"].repeat_interleave(params.n, dim=0)
                logps = completion_logprobs(model, out, prompt_mask, comp_mask, bf16=params.bf16)
            for row in range(new.shape[0]):
                ids = new[row][comp_mask[row].bool()].tolist()
                reason = "stop" if ids and ids[-1] in stop else "length"
                comp = Completion(
                    text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
                    token_ids=ids,
                    finish_reason=reason,
                    logprob=float(logps[row]) if logps is not None else None,
                )
                p = idx[row // params.n]
                results[p] = (results[p] or []) + [comp]
            if on_prompt_done is not None:
                for p in idx:
                    on_prompt_done(p, results[p] or [])
    return [r or [] for r in results]


def generate_chat(model, tokenizer, prompts: list, params: SamplingParams | None = None) -> list[str]:
    """Answer each prompt (string or message list) through the chat template: the first completion's text."""
    params = params or SamplingParams()
    if params.n != 1:
        params = SamplingParams(**{**params.__dict__, "n": 1})
    return [c[0].text for c in sample(model, tokenizer, prompts, params)]


def _generate_kwargs(params: SamplingParams, stop: list[int], pad_id: int) -> dict:
    greedy = params.temperature == 0
    kwargs: dict = dict(
        max_new_tokens=params.max_new_tokens,
        eos_token_id=stop,
        pad_token_id=pad_id,
        num_return_sequences=1 if greedy else params.n,
        use_cache=True,
    )
    if not greedy:
        kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def _encode_left(tokenizer, texts: list[str], device) -> dict:
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old_side
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def _completion_mask(new, stop: list[int]):
    """1 for every generated token up to and including the first stop token, 0 after (padding)."""
    import torch

    is_stop = torch.isin(new, torch.tensor(stop, device=new.device))
    # tokens strictly after the first stop token are padding
    after = (is_stop.long().cumsum(dim=1) - is_stop.long()) > 0
    return (~after).long()
