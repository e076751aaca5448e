"""Row layouts ("formats"): detection from a row's columns, and one parser per layout.

=====================  ===========================================================  ===========
format                 columns                                                      gives
=====================  ===========================================================  ===========
preference             ``prompt``, ``chosen``, ``rejected`` (TRL standard or        pairs
                       conversational), optional ``preference_prob``, ``margin``...
implicit_preference    ``chosen``, ``rejected`` full transcripts, no ``prompt``     pairs
                       (HH-RLHF strings or message lists; shared prompt extracted)
unpaired               ``prompt``, ``completion``, ``label`` (TRL/KTO unpaired)     unpaired
rated                  ``prompt``/``instruction``, ``completions`` = objects with   rankings
                       a response and ratings (UltraFeedback)
ranking                ``prompt``, ``responses``/``completions`` (texts) and        rankings
                       ``scores``/``ratings`` or ``ranks``
prompt_completion      ``prompt``, ``completion`` and no ``label`` (TRL SFT         demonstrations
                       prompt-completion, standard or conversational)
messages               ``messages``: a conversation whose last turn is the          demonstrations
                       assistant's completion (TRL SFT conversational)
=====================  ===========================================================  ===========

A row with ``prompt``, ``completion`` *and* ``label`` stays unpaired feedback (KTO). A demonstration row
carrying a ``label`` (read as ``prompt_completion``, e.g. with ``kind="demonstrations"``) is an
``unexpected_field`` error on ``label``, not a label silently kept as metadata.

Every parser keeps optional ``id``, ``annotator``, ``group``, ``weight``, ``metadata``, and stores any
column it does not understand in ``metadata`` (nothing is dropped).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .fields import (
    BAD_MESSAGE,
    EMPTY,
    IDENTICAL,
    MISSING_FIELD,
    UNEXPECTED_FIELD,
    WRONG_TYPE,
    BadRow,
    check_text,
    get_bool,
    get_id,
    get_metadata,
    get_number,
    get_probability,
    get_str,
    get_text,
    get_weight,
)
from .implicit import split_transcripts
from .rated import LIST_RESPONSE_KEYS, LIST_SCORE_KEYS, parse_ranking, parse_rated
from .records import Demonstration, Message, PreferencePair, Ranking, Text, Unpaired

FORMATS: dict[str, str] = {
    "preference": "prompt/chosen/rejected (TRL preference, standard or conversational)",
    "implicit_preference": "chosen/rejected full transcripts sharing a prompt prefix (HH-RLHF)",
    "unpaired": "prompt/completion/label binary feedback (TRL unpaired, KTO)",
    "rated": "prompt/instruction + completions with ratings (UltraFeedback)",
    "ranking": "prompt + responses + scores or ranks",
    "prompt_completion": "prompt/completion without label: demonstrations (TRL SFT prompt-completion)",
    "messages": "messages: a conversation ending with the assistant's completion (TRL SFT conversational)",
}
NATURAL_KIND: dict[str, str] = {
    "preference": "pairs",
    "implicit_preference": "pairs",
    "unpaired": "unpaired",
    "rated": "rankings",
    "ranking": "rankings",
    "prompt_completion": "demonstrations",
    "messages": "demonstrations",
}
_PAIR_KEYS = {
    "prompt",
    "chosen",
    "rejected",
    "id",
    "weight",
    "preference_prob",
    "margin",
    "annotator",
    "group",
    "metadata",
}
_UNPAIRED_KEYS = {"prompt", "completion", "label", "id", "weight", "annotator", "group", "metadata"}
_DEMONSTRATION_KEYS = {"prompt", "completion", "messages", "id", "weight", "annotator", "group", "metadata"}


@dataclass
class ParseContext:
    """What a parser needs besides the row; ``notes`` counts normalisations (reported as findings)."""

    typed: bool = True
    score_key: str | None = None
    notes: Counter[str] = field(default_factory=Counter)


def detect_format(row: Mapping[str, Any]) -> str | None:
    """The format whose columns ``row`` has, or None."""
    keys = {k for k, v in row.items() if v is not None}
    if {"chosen", "rejected"} <= keys:
        return "preference" if "prompt" in keys else "implicit_preference"
    if {"completion", "label"} <= keys:
        return "unpaired"
    comps = row.get("completions")
    if isinstance(comps, list) and comps and all(isinstance(c, Mapping) for c in comps):
        return "rated"
    if keys & set(LIST_RESPONSE_KEYS) and keys & {*LIST_SCORE_KEYS, "ranks"}:
        return "ranking"
    if isinstance(row.get("messages"), list):
        return "messages"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    return None


def _user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def normalise_conversation(
    prompt: Text, responses: list[Text], notes: Counter[str], field: str = "rejected"
) -> tuple[Text, list[Text]]:
    """Make prompt and responses the same style (TRL cannot mix them), and drop a repeated prompt.

    * string prompt + message-list responses: the prompt becomes one user message;
    * message-list prompt + string responses: each response becomes one assistant message;
    * responses that repeat the prompt messages at their start (as in ``ultrafeedback_binarized``)
      lose that copy, when every response has it and something follows it.

    Responses that mix strings and message lists are a ``wrong_type`` error on ``field``.
    """
    if len({isinstance(r, str) for r in responses}) > 1:
        raise BadRow(WRONG_TYPE, "responses mix plain strings and chat message lists", field)
    if isinstance(prompt, str) and all(isinstance(r, list) for r in responses):
        prompt = _user(prompt)
        notes["string prompt made a user message"] += 1
    elif isinstance(prompt, list) and all(isinstance(r, str) for r in responses):
        responses = [[{"role": "assistant", "content": r}] for r in responses]
        notes["string responses made assistant messages"] += 1
    if isinstance(prompt, list):
        n = len(prompt)
        if all(isinstance(r, list) and len(r) > n and r[:n] == prompt for r in responses):
            responses = [r[n:] for r in responses]
            notes["prompt repeated in responses removed"] += 1
    return prompt, responses


def _common(row: Mapping[str, Any], ctx: ParseContext, known: set[str]) -> dict[str, Any]:
    return {
        "id": get_id(row, typed=ctx.typed),
        "annotator": get_str(row, "annotator", ctx.typed),
        "group": get_str(row, "group", ctx.typed),
        "metadata": get_metadata(row, known, ctx.typed),
    }


def parse_preference(row: Mapping[str, Any], ctx: ParseContext) -> PreferencePair:
    """TRL preference row (explicit prompt)."""
    prompt = get_text(row, "prompt")
    chosen, rejected = get_text(row, "chosen"), get_text(row, "rejected")
    prompt, (chosen, rejected) = normalise_conversation(prompt, [chosen, rejected], ctx.notes)
    return _pair(row, ctx, prompt, chosen, rejected)


def parse_implicit(row: Mapping[str, Any], ctx: ParseContext) -> PreferencePair:
    """Full transcripts in ``chosen``/``rejected``; the shared prefix becomes the prompt."""
    prompt, chosen, rejected = split_transcripts(get_text(row, "chosen"), get_text(row, "rejected"))
    return _pair(row, ctx, prompt, chosen, rejected)


def _pair(row: Mapping[str, Any], ctx: ParseContext, prompt: Text, chosen: Text, rejected: Text) -> PreferencePair:
    if chosen == rejected:
        raise BadRow(IDENTICAL, "chosen and rejected are identical", "rejected")
    return PreferencePair(
        prompt,
        chosen,
        rejected,
        weight=get_weight(row, typed=ctx.typed),
        preference_prob=get_probability(row, "preference_prob", ctx.typed),
        margin=get_number(row, "margin", ctx.typed),
        **_common(row, ctx, _PAIR_KEYS),
    )


def parse_unpaired(row: Mapping[str, Any], ctx: ParseContext) -> Unpaired:
    """TRL unpaired (KTO) row: label True = desirable."""
    prompt = get_text(row, "prompt")
    completion = get_text(row, "completion")
    prompt, (completion,) = normalise_conversation(prompt, [completion], ctx.notes)
    return Unpaired(
        prompt,
        completion,
        get_bool(row, "label", ctx.typed),
        weight=get_weight(row, typed=ctx.typed),
        **_common(row, ctx, _UNPAIRED_KEYS),
    )


def _no_label(row: Mapping[str, Any], ctx: ParseContext) -> None:
    if "label" in row and not (row["label"] is None or (not ctx.typed and row["label"] == "")):
        raise BadRow(
            UNEXPECTED_FIELD,
            "a demonstration has no label (a row with a label is unpaired feedback: use kind unpaired for KTO)",
            "label",
        )


def _demonstration(
    row: Mapping[str, Any], ctx: ParseContext, prompt: Text, completion: Text, field: str
) -> Demonstration:
    prompt, (completion,) = normalise_conversation(prompt, [completion], ctx.notes, field)
    return Demonstration(
        prompt, completion, weight=get_weight(row, typed=ctx.typed), **_common(row, ctx, _DEMONSTRATION_KEYS)
    )


def parse_prompt_completion(row: Mapping[str, Any], ctx: ParseContext) -> Demonstration:
    """TRL SFT prompt-completion row: ``completion`` is the target, ``prompt`` (string or messages) the input."""
    _no_label(row, ctx)
    return _demonstration(row, ctx, get_text(row, "prompt"), get_text(row, "completion"), "completion")


def parse_messages(row: Mapping[str, Any], ctx: ParseContext) -> Demonstration:
    """TRL SFT conversational row: the last turn of ``messages`` (an assistant's) is the completion, the turns
    before it the prompt."""
    _no_label(row, ctx)
    if "prompt" in row or "completion" in row:
        extra = "prompt" if "prompt" in row else "completion"
        raise BadRow(UNEXPECTED_FIELD, "give either messages or prompt/completion, not both", extra)
    value = row.get("messages")
    if value is None:
        raise BadRow(
            MISSING_FIELD, "required field is missing" if "messages" not in row else "field is null", "messages"
        )
    if not isinstance(value, list):
        raise BadRow(WRONG_TYPE, f"expected a list of chat messages, got {type(value).__name__}", "messages")
    messages = check_text(value, "messages")
    assert isinstance(messages, list)
    last = messages[-1]
    if last["role"] != "assistant":
        raise BadRow(
            BAD_MESSAGE,
            f"the last message (message {len(messages) - 1}) has role {last['role']!r}; "
            "a demonstration ends with the assistant's completion",
            "messages",
        )
    if not last["content"].strip():
        raise BadRow(EMPTY, f"the last message (message {len(messages) - 1}) has empty content", "messages")
    if len(messages) < 2:
        raise BadRow(BAD_MESSAGE, "a conversation needs a prompt turn before the assistant's completion", "messages")
    prompt = messages[:-1]
    if not any(m["content"].strip() for m in prompt):
        raise BadRow(EMPTY, "every message before the completion has empty content", "messages")
    return Demonstration(
        prompt, [last], weight=get_weight(row, typed=ctx.typed), **_common(row, ctx, _DEMONSTRATION_KEYS)
    )


def _rated(row: Mapping[str, Any], ctx: ParseContext) -> Ranking:
    return _same_style(parse_rated(row, ctx.typed, ctx.score_key), ctx)


def _ranking(row: Mapping[str, Any], ctx: ParseContext) -> Ranking:
    return _same_style(parse_ranking(row, ctx.typed, ctx.score_key), ctx)


def _same_style(ranking: Ranking, ctx: ParseContext) -> Ranking:
    ranking.prompt, ranking.responses = normalise_conversation(
        ranking.prompt, ranking.responses, ctx.notes, "responses"
    )
    return ranking


PARSERS: dict[str, Callable[[Mapping[str, Any], ParseContext], PreferencePair | Ranking | Unpaired | Demonstration]] = {
    "preference": parse_preference,
    "implicit_preference": parse_implicit,
    "unpaired": parse_unpaired,
    "rated": _rated,
    "ranking": _ranking,
    "prompt_completion": parse_prompt_completion,
    "messages": parse_messages,
}
