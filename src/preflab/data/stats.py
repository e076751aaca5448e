"""Length statistics of loaded records (what ``preflab data inspect`` prints).

Token counts use the given tokenizer. A plain-string prompt or response counts its own tokens (no
special tokens); a conversation counts what its chat template renders: a prompt with the generation
cue (``add_generation_prompt=True``), a response as the extra tokens it adds after its prompt. These are
the lengths a trainer feeds the model, up to the EOS token it appends to completions.
Percentiles are nearest-rank (always an observed length).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .records import Demonstration, PreferencePair, Ranking, Text, Unpaired
from .serialize import Record

PERCENTILES = (50, 90, 99)


@dataclass
class LengthStats:
    """Distribution of one field's lengths."""

    field: str
    count: int
    p50: int
    p90: int
    p99: int
    max: int
    mean: float

    @classmethod
    def of(cls, field: str, lengths: Iterable[int]) -> LengthStats:
        """Statistics of a list of lengths."""
        return cls.from_counts(field, Counter(lengths))

    @classmethod
    def from_counts(cls, field: str, counts: Mapping[int, int]) -> LengthStats:
        """Statistics of a histogram ``{length: how many}`` (exact nearest-rank percentiles)."""
        n = sum(counts.values())
        if n == 0:
            return cls(field, 0, 0, 0, 0, 0, 0.0)
        values = sorted(counts)
        p = [_nearest_rank(values, counts, n, q) for q in PERCENTILES]
        mean = sum(v * counts[v] for v in values) / n
        return cls(field, n, p[0], p[1], p[2], values[-1], mean)


def _nearest_rank(values: list[int], counts: Mapping[int, int], n: int, q: int) -> int:
    """The smallest length whose share of items at or below it reaches ``q`` percent."""
    seen = 0
    for v in values:
        seen += counts[v]
        if seen * 100 >= q * n:
            return v
    return values[-1]


def fields_of(records: Sequence[Record]) -> dict[str, list[tuple[Text, Text | None]]]:
    """Per field name, the (text, its prompt) items to measure; prompts have prompt None."""
    out: dict[str, list[tuple[Text, Text | None]]] = {"prompt": []}
    for r in records:
        out["prompt"].append((r.prompt, None))
        if isinstance(r, PreferencePair):
            out.setdefault("chosen", []).append((r.chosen, r.prompt))
            out.setdefault("rejected", []).append((r.rejected, r.prompt))
        elif isinstance(r, Unpaired | Demonstration):
            out.setdefault("completion", []).append((r.completion, r.prompt))
        elif isinstance(r, Ranking):
            out.setdefault("responses", []).extend((resp, r.prompt) for resp in r.responses)
    return out


def char_length(text: Text) -> int:
    return len(text) if isinstance(text, str) else sum(len(m.get("content", "")) for m in text)


def _render(tokenizer: Any, messages: list[dict[str, str]], gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def token_lengths(tokenizer: Any, items: Sequence[tuple[Text, Text | None]]) -> list[int]:
    """Token count of each item (see the module docstring for conversations)."""
    strings = [i for i, (text, _) in enumerate(items) if isinstance(text, str)]
    out = [0] * len(items)
    if strings:
        enc = tokenizer([items[i][0] for i in strings], add_special_tokens=False)["input_ids"]
        for i, ids in zip(strings, enc, strict=True):
            out[i] = len(ids)
    convs = [i for i in range(len(items)) if not isinstance(items[i][0], str)]
    if convs:
        full, base = [], []
        for i in convs:
            text, prompt = items[i]
            if prompt is None:
                full.append(_render(tokenizer, text, gen=True))  # type: ignore[arg-type]
                base.append("")
            else:
                ctx = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
                full.append(_render(tokenizer, ctx + list(text), gen=False))  # type: ignore[arg-type]
                base.append(_render(tokenizer, ctx, gen=True))
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        base_ids = tokenizer(base, add_special_tokens=False)["input_ids"]
        for i, f, b in zip(convs, full_ids, base_ids, strict=True):
            out[i] = max(len(f) - len(b), 0)
    return out


def length_table(records: Sequence[Record], tokenizer: Any | None = None) -> list[LengthStats]:
    """One row per field: token lengths with ``tokenizer``, character lengths without one."""
    summary = RecordSummary(tokenizer)
    summary.add(records)
    return summary.table()


@dataclass
class RecordSummary:
    """What ``data inspect`` reports about records, accumulated batch by batch in bounded memory.

    Only histograms of lengths, a few counters and the distinct annotators / groups are kept; the
    records and their token ids are dropped after each :meth:`add`.
    """

    tokenizer: Any | None = None
    lengths: dict[str, Counter[int]] = field(default_factory=lambda: {"prompt": Counter()})
    n_records: int = 0
    styles: set[bool] = field(default_factory=set)
    ranking_sizes: Counter[int] = field(default_factory=Counter)
    annotators: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    soft_labels: int = 0

    def add(self, records: Sequence[Record]) -> None:
        """Measure one batch of records."""
        for name, items in fields_of(records).items():
            if self.tokenizer is None:
                lengths = [char_length(text) for text, _ in items]
            else:
                lengths = token_lengths(self.tokenizer, items)
            self.lengths.setdefault(name, Counter()).update(lengths)
        for r in records:
            self.n_records += 1
            self.styles.add(isinstance(r.prompt, str))
            if isinstance(r, Ranking):
                self.ranking_sizes[len(r.responses)] += 1
            if r.annotator is not None:
                self.annotators.add(r.annotator)
            if r.group is not None:
                self.groups.add(r.group)
            self.soft_labels += getattr(r, "preference_prob", None) is not None

    def table(self) -> list[LengthStats]:
        """One row per field measured, prompt first."""
        return [LengthStats.from_counts(name, counts) for name, counts in self.lengths.items()]

    def style(self) -> str:
        """``"standard"``, ``"conversational"``, ``"mixed"`` or ``"empty"`` (see :func:`style_of`)."""
        if not self.styles:
            return "empty"
        return "mixed" if len(self.styles) > 1 else "standard" if True in self.styles else "conversational"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    """Lines of a text table: the first column left-aligned, the others right-aligned, each column as
    wide as its longest cell and separated by at least two spaces (so 7-digit numbers never touch)."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def style_of(records: Sequence[Record]) -> str:
    """``"standard"`` (plain strings), ``"conversational"`` (message lists) or ``"mixed"``."""
    kinds = {isinstance(r.prompt, str) for r in records}
    if not kinds:
        return "empty"
    if len(kinds) > 1:
        return "mixed"
    return "standard" if kinds.pop() else "conversational"
