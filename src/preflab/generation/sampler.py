"""Batched sampling from a causal LM with Hugging Face ``generate`` (KV cache), reproducible by seed.

:func:`sample` answers each prompt (a string or a chat message list, rendered through the tokenizer's
chat template) with ``n`` completions and returns, for each, the text, the completion token ids (up to
and including the EOS token that ended it) and, on request, the sequence log-probability
``log π(y|x) = Σ_t log π(y_t | x, y_<t)`` under the model's own distribution (temperature 1, no top-p
truncation: the quantity that DPO / policy-gradient objectives need, not the sampling distribution).

Reproducibility: one ``seed`` seeds torch's generator (in a forked RNG state, so the caller's global
state is untouched). The same prompts, parameters and model give the same completions; a prompt's
completions may change with the *other* prompts in its batch (sampling draws one random tensor per
step for the whole batch), as in every batched sampler.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from ..errors import ConfigError
from .decode import decode, supports_decode


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
    """Sequences per ``generate`` call (prompts per call = ``max(1, batch_size // n)``)."""
    return_logprobs: bool = False
    """Also compute each completion's summed log-prob under the model (one extra forward pass)."""
    stop_token_ids: tuple[int, ...] = ()
    """Extra token ids that end a completion, besides the tokenizer's and generation config's EOS."""
    bf16: bool | None = None
    """bf16 decoding. On a CUDA GPU with bf16: autocast. On a CPU with bf16 matmul support (AMX /
    AVX-512 BF16): the weights are cast to bf16 for the call and restored after (autocast would re-cast
    every weight at every decoding step; bf16 weights decode ~2x faster than fp32 on this project's
    CPU, see bench/generation.py). None = wherever supported, True = the same (an error-free no-op where
    unsupported), False = never (the model's own dtype)."""

    def __post_init__(self) -> None:
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens", "must be >= 1"),
            (self.temperature >= 0, "temperature", "must be >= 0"),
            (0 < self.top_p <= 1, "top_p", "must be in (0, 1]"),
            (self.n >= 1, "n", "must be >= 1"),
            (self.top_k >= 0, "top_k", "must be >= 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
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

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def chat_messages(prompt) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string becomes one user turn (an HH transcript, its turns), as in
    training (:func:`preflab.data.tokenize.as_messages`)."""
    from ..data.tokenize import as_messages

    return as_messages(prompt, "user")


def render_prompts(tokenizer, prompts: list) -> list[str]:
    """Chat-template each prompt, ending with the assistant's generation prompt."""
    return [
        tokenizer.apply_chat_template(chat_messages(p), add_generation_prompt=True, tokenize=False) for p in prompts
    ]


def eos_ids(model, tokenizer, extra: tuple[int, ...] = ()) -> list[int]:
    """Every token id that ends a completion: tokenizer EOS, generation-config EOS(s), ``extra``."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None), *extra]
    for c in candidates:
        for i in c if isinstance(c, list | tuple) else [c]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def bf16_autocast_ok(model, enabled: bool | None = True) -> bool:
    """Whether to run a forward pass under bf16 autocast: ``enabled`` True = where supported (CPU, bf16
    GPUs); None = only on GPUs; False = never. (Decoding uses :func:`bf16_weights` on CPU instead.)"""
    import torch

    if enabled is False:
        return False
    if enabled is None and model.device.type == "cpu":
        return False
    if model.device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return model.device.type == "cpu"


def cpu_bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def bf16_weights(model, enabled: bool | None = True):
    """On a CPU with bf16 support, the model's fp32 parameters become bf16 inside the block and are
    restored (the very same tensors) after; buffers (e.g. rotary frequencies) stay as they are."""
    import torch

    if enabled is False or model.device.type != "cpu" or not cpu_bf16_supported():
        yield model
        return
    saved = []
    try:
        with torch.no_grad():
            for p in model.parameters():
                if p.dtype == torch.float32:
                    saved.append((p, p.data))
                    p.data = p.data.to(torch.bfloat16)
        yield model
    finally:
        for p, data in saved:
            p.data = data


def sample(model, tokenizer, prompts: list, params: SamplingParams | None = None) -> list[list[Completion]]:
    """Sample ``params.n`` completions for every prompt; result ``[i][j]`` is prompt i's j-th completion."""
    import torch

    from .logprobs import completion_logprobs

    params = params or SamplingParams()
    if not prompts:
        return []
    texts = render_prompts(tokenizer, prompts)
    stop = eos_ids(model, tokenizer, params.stop_token_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    per_call = max(1, params.batch_size // params.n)
    # Longest prompts first: similar lengths share a batch (less padding); order restored below.
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
    results: list[list[Completion] | None] = [None] * len(texts)
    own_loop = supports_decode(model)
    kwargs = _generate_kwargs(params, stop, pad_id)
    with torch.random.fork_rng(devices=_rng_devices(model)):
        torch.manual_seed(params.seed)
        for start in range(0, len(order), per_call):
            idx = order[start:start + per_call]
            enc = _encode_left(tokenizer, [texts[i] for i in idx], model.device)
            reps = 1 if params.temperature == 0 else params.n  # greedy: decode once, repeat
            gpu_autocast = model.device.type == "cuda" and bf16_autocast_ok(model, params.bf16)
            with torch.no_grad(), bf16_weights(model, params.bf16), torch.autocast(
                    model.device.type, dtype=torch.bfloat16, enabled=gpu_autocast):
                if own_loop:
                    ids, mask = (enc[k].repeat_interleave(reps, dim=0) for k in ("input_ids", "attention_mask"))
                    new = decode(model, ids, mask, max_new_tokens=params.max_new_tokens, stop_ids=stop,
                                 pad_id=pad_id, temperature=params.temperature, top_k=params.top_k,
                                 top_p=params.top_p)
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
    return [r or [] for r in results]


def generate_chat(model, tokenizer, prompts: list, params: SamplingParams | None = None) -> list[str]:
    """Answer each prompt (string or message list) through the chat template: the first completion's text."""
    params = params or SamplingParams()
    if params.n != 1:
        params = SamplingParams(**{**params.__dict__, "n": 1})
    return [c[0].text for c in sample(model, tokenizer, prompts, params)]


def _generate_kwargs(params: SamplingParams, stop: list[int], pad_id: int) -> dict:
    greedy = params.temperature == 0
    kwargs: dict = dict(max_new_tokens=params.max_new_tokens, eos_token_id=stop, pad_token_id=pad_id,
                        num_return_sequences=1 if greedy else params.n, use_cache=True)
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


def _rng_devices(model) -> list:
    return [model.device] if model.device.type == "cuda" else []
