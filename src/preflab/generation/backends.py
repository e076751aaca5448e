"""Sampler backends: preflab's :func:`~preflab.generation.sample` everywhere (the rollout engine, the plain loop or
Hugging Face ``generate``, see ``SamplingParams.engine``), vLLM when it is installed and a GPU is present.

Both return the same :class:`~preflab.generation.sampler.Completion` lists, so callers (the CLI, online
training schedules) pick a backend once with :func:`make_backend` and never branch on it again.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod

from ..errors import ConfigError
from .sampler import Completion, SamplingParams, chat_messages, sample


class SamplerBackend(ABC):
    """Samples ``params.n`` completions for each prompt (a string or chat message list)."""

    name: str = "backend"

    @abstractmethod
    def generate(self, prompts: list, params: SamplingParams) -> list[list[Completion]]:
        """Result ``[i][j]``: prompt i's j-th completion."""


class HFBackend(SamplerBackend):
    """An in-memory Hugging Face model sampled by :func:`sample` (the rollout engine where the model supports it)."""

    name = "hf"

    def __init__(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def generate(self, prompts: list, params: SamplingParams) -> list[list[Completion]]:
        return sample(self.model, self.tokenizer, prompts, params)


class VLLMBackend(SamplerBackend):
    """vLLM's offline ``LLM.chat`` (continuous batching, paged KV cache); needs ``vllm`` and a GPU.

    The engine is built once from a model path or hub id (vLLM loads its own weights, so an in-memory
    HF model cannot be shared; after a policy update, save it and build a new backend). Per-sequence
    log-probs are vLLM's ``cumulative_logprob``, requested with ``logprobs=0``; recent vLLM computes
    them from the raw model distribution (``logprobs_mode="raw_logprobs"``), matching the HF backend.
    """

    name = "vllm"

    def __init__(self, model_path: str, *, dtype: str = "auto", seed: int = 0, **engine_kwargs) -> None:
        from vllm import LLM  # lazy: optional dependency

        self.llm = LLM(model=model_path, dtype=dtype, seed=seed, **engine_kwargs)

    def generate(self, prompts: list, params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VLLMParams

        greedy = params.temperature == 0
        vparams = VLLMParams(
            n=params.n,
            temperature=params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=-1 if greedy or params.top_k == 0 else params.top_k,
            max_tokens=params.max_new_tokens,
            seed=params.seed,
            stop_token_ids=list(params.stop_token_ids) or None,
            logprobs=0 if params.return_logprobs else None,
        )
        outputs = self.llm.chat([chat_messages(p) for p in prompts], vparams, use_tqdm=False)
        results = []
        for out in outputs:
            results.append(
                [
                    Completion(
                        text=o.text.strip(),
                        token_ids=list(o.token_ids),
                        finish_reason="length" if o.finish_reason == "length" else "stop",
                        logprob=o.cumulative_logprob if params.return_logprobs else None,
                    )
                    for o in out.outputs
                ]
            )
        return results


def vllm_available() -> bool:
    """True when ``vllm`` is importable and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


def make_backend(
    name: str = "auto", *, model=None, tokenizer=None, model_path: str | None = None, **engine_kwargs
) -> SamplerBackend:
    """``"hf"`` (needs ``model`` and ``tokenizer``), ``"vllm"`` (needs ``model_path``), or ``"auto"``:
    vLLM when :func:`vllm_available` and a ``model_path`` is given, else Hugging Face."""
    if name not in ("auto", "hf", "vllm"):
        raise ConfigError(f"unknown sampler backend '{name}' (use auto, hf or vllm)", field="sampling.backend")
    if name == "vllm" or (name == "auto" and model_path is not None and vllm_available()):
        if name == "vllm" and not vllm_available():
            raise ConfigError("the vllm backend needs the 'vllm' package and a CUDA GPU", field="sampling.backend")
        if model_path is None:
            raise ConfigError("the vllm backend needs a model path or hub id", field="sampling.backend")
        return VLLMBackend(model_path, **engine_kwargs)
    if model is None or tokenizer is None:
        raise ConfigError("the hf backend needs a loaded model and tokenizer", field="sampling.backend")
    return HFBackend(model, tokenizer)
