"""Records to token ids: chat templates, prompt/completion split, EOS, truncation with counts.

A prompt and its completion(s) are rendered through the tokenizer's chat template the way TRL does it:
the prompt with ``add_generation_prompt=True``, the whole conversation without, and the completion text is
the conversation minus the prompt (which must be a prefix of it). Prompt and completion are tokenised
separately, so every completion of a prompt shares the same prompt ids (what prefix sharing needs) and
the loss sees only completion tokens. A completion ends with exactly one EOS token: the template's
end-of-turn token where that is EOS (ChatML's ``<|im_end|>``; trailing whitespace after it is dropped),
else one EOS is appended. Without a chat template (or with ``chat_template=False``) the prompt text is
tokenised with the tokenizer's special tokens (BOS where it adds one) and the completion gets an EOS.

Truncation (``max_length`` counts prompt + the longest completion):

* ``keep_end`` (default): the prompt keeps its *end* (the tokens nearest the answer), cut from the left,
  never below ``max_prompt_length`` (default ``max_length // 2``) unless ``max_prompt_length`` asks for it;
  then completions that still do not fit lose their tail (and so their EOS). Every cut is counted.
* ``skip``: rows that do not fit are left out and listed in :class:`TokenizeStats`.
* ``error``: a row that does not fit raises :class:`preflab.errors.DataError` naming the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import DataError
from .fields import BadRow
from .implicit import transcript_to_messages
from .records import Demonstration, PreferencePair, Ranking, Text, Unpaired

Truncation = Literal["keep_end", "skip", "error"]


@dataclass
class TokenizedExample:
    """One prompt with its completion(s) as ids. Pairs: ``completions == (chosen, rejected)``;
    unpaired: ``(completion,)`` with ``label`` 1.0 (desirable) / 0.0; demonstrations: ``(completion,)``, no label;
    ``index`` is the row in the dataset."""

    index: int
    prompt_ids: list[int]
    completions: tuple[list[int], ...]
    weight: float = 1.0
    prob: float | None = None
    label: float | None = None
    margin: float | None = None  # pairs: the reward gap asked of a reward model (None = 0)
    scores: tuple[float, ...] | None = None  # rankings: one score per completion, higher = better
    annotator: int | None = None  # pairs: the annotator's index in the dataset's sorted annotator names (mixtures)
    prompt_cut: int = 0
    completion_cut: int = 0

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + sum(len(c) for c in self.completions)


@dataclass
class TokenizeStats:
    """What tokenisation did to a dataset: counts of truncated rows / tokens, rows skipped (by index)."""

    rows: int = 0
    truncated_rows: int = 0
    prompt_tokens_cut: int = 0
    completion_tokens_cut: int = 0
    completions_without_eos: int = 0
    skipped: list[int] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.rows} rows"]
        if self.truncated_rows:
            parts.append(
                f"{self.truncated_rows} truncated ({self.prompt_tokens_cut} prompt tokens, "
                f"{self.completion_tokens_cut} completion tokens cut)"
            )
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped as too long (rows {_preview(self.skipped)})")
        return ", ".join(parts)


def _preview(items: list[int], n: int = 5) -> str:
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", … (+{len(items) - n})" if len(items) > n else "")


@dataclass
class TokenizeOptions:
    """How records become ids (mirrors the ``train:`` config fields of the same names)."""

    max_length: int = 1024
    max_prompt_length: int | None = None
    truncation: Truncation = "keep_end"
    chat_template: bool | None = None  # None = use it when the tokenizer has one


def as_messages(text: Text, role: str) -> list[dict[str, Any]]:
    """A plain string becomes one message of ``role``; a message list is kept. A user prompt that is an HH
    transcript (``"\\n\\nHuman: ...\\n\\nAssistant:"``, as HH-RLHF's implicit prompts are) becomes its turns,
    so the chat template renders each turn with its own role instead of one message holding the markers."""
    if not isinstance(text, str):
        return list(text)
    if role == "user" and text.lstrip("\n").startswith("Human:"):
        try:
            return [dict(m) for m in transcript_to_messages("\n\n" + text.lstrip("\n"))]
        except BadRow:
            pass
    return [{"role": role, "content": text}]


def _as_plain(text: Text, what: str, row: int) -> str:
    if isinstance(text, str):
        return text
    if len(text) == 1 and isinstance(text[0].get("content"), str):
        return text[0]["content"]
    raise DataError(f"{what} is a conversation but the tokenizer has no chat template", row=row, field=what)


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


class Tokenizer:
    """Renders and tokenises prompts and completions for one tokenizer (see module docstring)."""

    def __init__(self, tokenizer: Any, options: TokenizeOptions | None = None):
        self.tok = tokenizer
        self.opt = options or TokenizeOptions()
        if self.tok.eos_token_id is None:
            raise DataError("the tokenizer has no EOS token; completions could not be terminated")
        has_template = getattr(tokenizer, "chat_template", None) is not None
        self.use_template = has_template if self.opt.chat_template is None else self.opt.chat_template
        if self.use_template and not has_template:
            raise DataError("chat_template is on but the tokenizer has no chat template", field="chat_template")
        if self.opt.max_length < 2:
            raise DataError(f"max_length must be at least 2, got {self.opt.max_length}", field="max_length")

    # ------------------------------------------------------------------ rendering
    def prompt_text(self, prompt: Text, row: int = -1) -> str:
        if not self.use_template:
            return _as_plain(prompt, "prompt", row)
        return self.tok.apply_chat_template(as_messages(prompt, "user"), add_generation_prompt=True, tokenize=False)

    def prompt_ids(self, prompt: Text, row: int = -1) -> list[int]:
        ids = _ids(self.tok, self.prompt_text(prompt, row), special=not self.use_template)
        if not ids:
            bos = self.tok.bos_token_id
            if bos is None:
                raise DataError(
                    "prompt is empty and the tokenizer has no BOS token to start it", row=row, field="prompt"
                )
            ids = [bos]
        return ids

    def completion_ids(self, prompt: Text, completion: Text, row: int = -1, what: str = "completion") -> list[int]:
        eos = self.tok.eos_token_id
        if not self.use_template:
            return _ids(self.tok, _as_plain(completion, what, row), special=False) + [eos]
        prompt_msgs = as_messages(prompt, "user")
        full = self.tok.apply_chat_template(prompt_msgs + as_messages(completion, "assistant"), tokenize=False)
        head = self.prompt_text(prompt, row)
        if not full.startswith(head):
            raise DataError(
                "the chat template does not render the prompt as a prefix of prompt + completion", row=row, field=what
            )
        ids = _ids(self.tok, full[len(head) :], special=False)
        if eos in ids:
            last = len(ids) - 1 - ids[::-1].index(eos)
            if not self.tok.decode(ids[last + 1 :]).strip():
                return ids[: last + 1]
        return ids + [eos]

    # ------------------------------------------------------------------ truncation
    def fit(
        self, prompt: list[int], completions: Sequence[list[int]], row: int
    ) -> tuple[list[int], list[list[int]], int, int] | None:
        """Apply the truncation policy; returns (prompt, completions, prompt_cut, completion_cut) or None to skip."""
        opt = self.opt
        longest = max(len(c) for c in completions)
        too_long = len(prompt) + longest > opt.max_length
        over_prompt = opt.max_prompt_length is not None and len(prompt) > opt.max_prompt_length
        if not (too_long or over_prompt):
            return prompt, list(completions), 0, 0
        if opt.truncation == "skip":
            return None
        if opt.truncation == "error":
            what = (
                f"prompt has {len(prompt)} tokens > max_prompt_length {opt.max_prompt_length}"
                if over_prompt
                else f"prompt + completion is {len(prompt) + longest} tokens > max_length {opt.max_length}"
            )
            raise DataError(what + " (set train.truncation to keep_end or skip)", row=row)
        floor = opt.max_prompt_length if opt.max_prompt_length is not None else opt.max_length // 2
        floor = max(1, min(floor, opt.max_length - 1))
        keep = len(prompt)
        if over_prompt:
            keep = min(keep, floor)
        if keep + longest > opt.max_length:
            keep = min(keep, max(floor, opt.max_length - longest))
        new_prompt = prompt[len(prompt) - keep :]
        room = opt.max_length - len(new_prompt)
        new_completions = [c[:room] for c in completions]
        cut = sum(len(c) - len(n) for c, n in zip(completions, new_completions, strict=True))
        return new_prompt, new_completions, len(prompt) - keep, cut

    # ------------------------------------------------------------------ records
    def example(self, record: Any, row: int) -> TokenizedExample | None:
        """One record as a :class:`TokenizedExample` (None when the truncation policy skips it)."""
        if isinstance(record, PreferencePair):
            texts = [("chosen", record.chosen), ("rejected", record.rejected)]
            extra: dict[str, Any] = {"weight": record.weight, "prob": record.preference_prob, "margin": record.margin}
        elif isinstance(record, Unpaired):
            texts = [("completion", record.completion)]
            extra = {"weight": record.weight, "label": 1.0 if record.label else 0.0}
        elif isinstance(record, Demonstration):  # supervised fine-tuning: one target completion, no label
            texts = [("completion", record.completion)]
            extra = {"weight": record.weight}
        elif isinstance(record, Ranking):  # listwise objectives (PRO, LiPO): K responses with their scores
            if len(record.responses) < 2:
                raise DataError("a ranking needs at least two responses", row=row, field="responses")
            texts = [(f"responses[{k}]", text) for k, text in enumerate(record.responses)]
            if record.scores is not None:
                scores = tuple(float(s) for s in record.scores)
            elif record.ranks is not None:
                scores = tuple(-float(r) for r in record.ranks)  # rank 1 = best = highest score
            else:
                raise DataError("a ranking needs scores or ranks", row=row, field="scores")
            if len(scores) != len(texts):
                raise DataError(f"{len(scores)} scores for {len(texts)} responses", row=row, field="scores")
            extra = {"scores": scores}
        else:
            raise DataError(f"cannot tokenise a {type(record).__name__}", row=row)
        prompt = self.prompt_ids(record.prompt, row)
        completions = [self.completion_ids(record.prompt, text, row, what) for what, text in texts]
        return self.from_ids(row, prompt, completions, **extra)

    def from_ids(
        self,
        row: int,
        prompt_ids: list[int],
        completions: Sequence[list[int]],
        **fields: Any,
    ) -> TokenizedExample | None:
        """An example from ids already made (e.g. sampled completions), with the truncation policy applied."""
        fitted = self.fit(prompt_ids, completions, row)
        if fitted is None:
            return None
        prompt, comps, p_cut, c_cut = fitted
        return TokenizedExample(row, prompt, tuple(comps), prompt_cut=p_cut, completion_cut=c_cut, **fields)


def tokenize_records(
    records: Sequence[Any],
    tokenizer: Any,
    options: TokenizeOptions | None = None,
) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenise every record (pairs or unpaired); rows skipped by the truncation policy are counted."""
    tk = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer(tokenizer, options)
    eos = tk.tok.eos_token_id
    stats = TokenizeStats(rows=len(records))
    out: list[TokenizedExample] = []
    for row, record in enumerate(records):
        ex = tk.example(record, row)
        if ex is None:
            stats.skipped.append(row)
            continue
        if ex.prompt_cut or ex.completion_cut:
            stats.truncated_rows += 1
            stats.prompt_tokens_cut += ex.prompt_cut
            stats.completion_tokens_cut += ex.completion_cut
        stats.completions_without_eos += sum(1 for c in ex.completions if not c or c[-1] != eos)
        out.append(ex)
    return out, stats
