"""Prompts for sampling: chat messages, the chat template's rendering (a one-line error for a tokenizer without
one), the model's context checked before any decoding, and the token ids that end a completion."""

from __future__ import annotations

from ..errors import ConfigError


def chat_messages(prompt) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string becomes one user turn (an HH transcript, its turns), as in
    training (:func:`preflab.data.tokenize.as_messages`)."""
    from ..data.tokenize import as_messages

    return as_messages(prompt, "user")


def render_prompts(tokenizer, prompts: list) -> list[str]:
    """Chat-template each prompt, ending with the assistant's generation prompt."""
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ConfigError(
            f"the tokenizer '{name}' has no chat template: set tokenizer.chat_template (or load an "
            "instruct model) before sampling chat prompts",
            field="model.name_or_path",
        )
    return [
        tokenizer.apply_chat_template(chat_messages(p), add_generation_prompt=True, tokenize=False) for p in prompts
    ]


def context_length(model) -> int | None:
    """The model's maximum number of positions (``max_position_embeddings``), None when it declares none."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    value = getattr(getattr(base, "config", None), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


def check_context(model, prompt_ids: list[list[int]], max_new_tokens: int) -> None:
    """One-line error, before any decoding, when a prompt plus ``max_new_tokens`` exceeds the context."""
    limit = context_length(model)
    if limit is None:
        return
    for i, ids in enumerate(prompt_ids):
        if len(ids) + max_new_tokens > limit:
            raise ConfigError(
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it needs "
                f"{len(ids) + max_new_tokens} positions but the model's context is {limit}",
                field="sampling.max_new_tokens",
            )


def eos_ids(model, tokenizer, extra: tuple[int, ...] = ()) -> list[int]:
    """Every token id that ends a completion: tokenizer EOS, generation-config EOS(s), ``extra``."""
    ids: list[int] = []
    candidates = [tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None), *extra]
    for c in candidates:
        for i in c if isinstance(c, list | tuple) else [c]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids
