"""Sampling from a policy: the rollout engine (CPU/GPU), the plain decoding loop, Hugging Face ``generate`` (the
reference) or vLLM, behind one backend interface."""

from .backends import HFBackend, SamplerBackend, VLLMBackend, make_backend, vllm_available
from .engine import rollout, supports_engine
from .logprobs import completion_logprobs
from .sampler import Completion, SamplingParams, chat_messages, generate_chat, sample

__all__ = [
    "Completion",
    "HFBackend",
    "SamplerBackend",
    "SamplingParams",
    "VLLMBackend",
    "chat_messages",
    "completion_logprobs",
    "generate_chat",
    "make_backend",
    "rollout",
    "sample",
    "supports_engine",
    "vllm_available",
]
