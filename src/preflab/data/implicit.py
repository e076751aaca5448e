"""Extract the shared prompt from "implicit prompt" pairs (whole transcripts in chosen and rejected).

Anthropic's HH-RLHF stores each side as one transcript, ``"\\n\\nHuman: ...\\n\\nAssistant: ..."``, and the
two sides differ only in the last assistant turn. The DPO reference implementation (Rafailov et al. 2023,
``extract_anthropic_prompt``) takes the prompt to be everything up to and including the last
``"\\n\\nAssistant:"``; TRL's ``extract_prompt`` takes the longest common prefix. We combine both: the
prompt is the longest common prefix, cut back to just after the last assistant marker inside it (so a
response that begins with the same word on both sides keeps that word), or, when there is no marker, to
the last whitespace, which then begins both responses (TRL also moves that space into the responses);
so no word is split. For chat message lists the prompt is the longest common
prefix of whole messages (TRL's rule).
"""

from __future__ import annotations

import os
import re

from .fields import IDENTICAL, NO_SHARED_PROMPT, BadRow
from .records import Message, Text

#: Assistant-turn markers of transcript layouts (HH-RLHF first); the prompt ends right after one.
ASSISTANT_MARKERS: tuple[str, ...] = ("\n\nAssistant:", "\nAssistant:", "\n\nassistant:", "\nassistant:")
HUMAN_MARKER = "\n\nHuman:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_transcripts(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    """``(prompt, chosen_response, rejected_response)`` from two full transcripts of the same kind."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        return _split_strings(chosen, rejected)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return _split_messages(chosen, rejected)
    raise BadRow(
        IDENTICAL if chosen == rejected else "wrong_type",
        "chosen and rejected must both be strings or both be message lists",
        "rejected",
    )


def _split_strings(chosen: str, rejected: str) -> tuple[str, str, str]:
    if chosen == rejected:
        raise BadRow(IDENTICAL, "chosen and rejected transcripts are identical", "rejected")
    common = os.path.commonprefix([chosen, rejected])
    cut = max((common.rfind(m) + len(m) for m in ASSISTANT_MARKERS if m in common), default=-1)
    if cut < 0:  # no turn marker: end the prompt at the last whitespace, which starts the responses
        cut = max(common.rfind(" "), common.rfind("\n"), common.rfind("\t"), 0)
    prompt = chosen[:cut]
    if not prompt.strip():
        raise BadRow(NO_SHARED_PROMPT, "chosen and rejected share no prompt prefix (and no prompt column)", "chosen")
    c, r = chosen[cut:], rejected[cut:]
    for name, text in (("chosen", c), ("rejected", r)):
        if not text.strip():
            raise BadRow("empty_string", "nothing follows the shared prompt", name)
    return prompt, c, r


def _split_messages(
    chosen: list[Message], rejected: list[Message]
) -> tuple[list[Message], list[Message], list[Message]]:
    if chosen == rejected:
        raise BadRow(IDENTICAL, "chosen and rejected conversations are identical", "rejected")
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        raise BadRow(NO_SHARED_PROMPT, "chosen and rejected share no leading messages (and no prompt column)", "chosen")
    c, r = chosen[n:], rejected[n:]
    for name, msgs in (("chosen", c), ("rejected", r)):
        if not msgs or not any(m.get("content", "").strip() for m in msgs):
            raise BadRow("empty_string", "no message follows the shared prompt", name)
    return chosen[:n], c, r


def transcript_to_messages(text: str) -> list[Message]:
    """An HH transcript (``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) as chat messages.

    A trailing empty ``Assistant:`` turn (the generation cue at the end of a prompt) is dropped.
    """
    parts = _TURN.split(text)
    if len(parts) < 3:
        raise BadRow("wrong_type", "text holds no '\\n\\nHuman:' / '\\n\\nAssistant:' turns")
    messages: list[Message] = []
    head = parts[0].strip()
    if head:
        messages.append({"role": "system", "content": head})
    for who, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": "user" if who == "Human" else "assistant", "content": content.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages
