"""Helpers shared by the model-backed judges: prompt text, chat rendering, batched forward passes."""

from __future__ import annotations

import math


def prompt_text(prompt) -> str:
    """A prompt (string or chat message list) as plain text: the messages' contents, one per line."""
    if isinstance(prompt, str):
        return prompt
    if hasattr(prompt, "prompt"):  # a Task
        return prompt.prompt
    return "\n".join(str(m.get("content", "")) for m in prompt)


def conversation(prompt, response: str) -> list[dict[str, str]]:
    """The chat (prompt turns + the assistant's response) that a reward model scores."""
    if hasattr(prompt, "prompt"):
        prompt = prompt.prompt
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return turns + [{"role": "assistant", "content": response}]


def render(tokenizer, messages: list[dict[str, str]], *, generation_prompt: bool) -> str:
    """Chat-template the messages (plain ``role: content`` lines when the tokenizer has no template)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    text = "\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text + ("\nassistant:" if generation_prompt else "")


def encode(tokenizer, texts: list[str], device, *, side: str, max_length: int | None = None) -> dict:
    """Tokenise with padding on ``side`` (truncating from the left: the end of a conversation matters)."""
    old_side, old_trunc = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = side, "left"
    try:
        enc = tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            truncation=max_length is not None,
            max_length=max_length,
        )
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_side, old_trunc
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
