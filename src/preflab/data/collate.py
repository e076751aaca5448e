"""Batches of tokenised examples in three layouts, each with a plan saying where every completion token's
log-prob comes from.

Every batch is a list of *groups*: one prompt and K completions of it (a pair: K = 2, chosen then
rejected; unpaired with a KL term: the completion and a mismatched one). Sequence ``s = k·G + g`` is the
k-th completion of group g, so the first G sequences are the chosen ones, the next G the rejected ones.

Layouts (``layout=``):

* ``padded``: one row per (prompt, completion), right-padded, with a 2D attention mask. Works with every
  attention implementation.
* ``packed``: padding-free; all sequences concatenated in one row, ``position_ids`` restarting at 0 for
  each and no attention mask, which transformers turns into a block-diagonal causal mask (sdpa, eager,
  flash-attention) — no compute is spent on padding.
* ``prefix_shared``: one row per group, ``[prompt, completion_1, …, completion_K]``: the prompt is encoded
  once; each completion attends to the prompt and to itself (a 4D boolean mask; sdpa / eager attention)
  and its positions continue from the prompt's end, so its log-probs equal those of the padded layout.

The plan (``logit_index``, ``target_ids``, ``sequence_index``) is layout-independent: completion token i
is ``target_ids[i]``, predicted by the logits at flat position ``logit_index[i]`` of the ``(R·T)`` grid,
and belongs to sequence ``sequence_index[i]``. :class:`preflab.models.logprobs.SequenceScorer` uses only
the plan, so the three layouts give the same log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from ..errors import DataError
from .tokenize import TokenizedExample

Layout = Literal["padded", "packed", "prefix_shared"]
LAYOUTS: tuple[str, ...] = ("padded", "packed", "prefix_shared")


@dataclass
class SequenceBatch:
    """Model inputs for S sequences in one layout, plus the completion-token plan (see module docstring)."""

    input_ids: Tensor  # (R, T)
    attention_mask: Tensor | None  # (R, T) padding mask, (R, 1, T, T) bool mask, or None (packed)
    position_ids: Tensor | None  # (R, T)
    logit_index: Tensor  # (N,) flat index into the (R*T) grid of the logits predicting each target
    target_ids: Tensor  # (N,)
    sequence_index: Tensor  # (N,) which sequence each target belongs to
    num_sequences: int
    completion_lengths: Tensor  # (S,) completion tokens per sequence
    num_tokens: int  # real (non-padding) tokens the model reads
    layout: str = "padded"

    def to(self, device: torch.device | str) -> SequenceBatch:
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return SequenceBatch(**moved)


@dataclass
class ExampleBatch:
    """A batch of examples: their sequences and per-example fields.

    ``batch_kind`` is ``"pair"`` (sequences: G chosen, then G rejected), ``"unpaired"`` (G completions, then G
    mismatched KL completions when ``with_kl``) or ``"demonstration"`` (G completions to imitate). ``index`` is
    each example's row in its dataset, so that sequence ``k·G + g`` is completion slot k of row ``index[g]``
    (what cached reference log-probs key on).
    ``winrate`` (G, K), when a schedule estimated them: each completion's win rate P̂(y ≻ π_t | x) against
    the policy's own samples (SPPO, DNO).
    """

    batch_kind: str  # the batch's layout of completions; see collate_examples
    sequences: SequenceBatch
    num_examples: int
    index: Tensor
    weight: Tensor
    prob: Tensor | None = None
    label: Tensor | None = None
    margin: Tensor | None = None  # pairs: reward gap asked of a reward model (None = none given; a missing one is 0)
    with_kl: bool = False
    meta: dict = field(default_factory=dict)
    winrate: Tensor | None = None
    annotator: Tensor | None = None  # pairs: integer annotator ids (MaxMin-RLHF's mixture), when every pair has one

    def to(self, device: torch.device | str) -> ExampleBatch:
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        moved["sequences"] = self.sequences.to(device)
        return ExampleBatch(**moved)


Group = tuple[list[int], Sequence[list[int]]]


def _plan(starts: list[int], prev: list[int], targets: list[list[int]]) -> tuple[list[int], list[int], list[int]]:
    """Flatten per-sequence plans: token j of sequence s is predicted at ``prev[s]`` (j = 0) or
    ``starts[s] + j − 1`` (j > 0)."""
    logit_index, target_ids, seq_index = [], [], []
    for s, (start, before, ids) in enumerate(zip(starts, prev, targets, strict=True)):
        for j, tok in enumerate(ids):
            logit_index.append(before if j == 0 else start + j - 1)
            target_ids.append(tok)
            seq_index.append(s)
    return logit_index, target_ids, seq_index


def _finish(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    position_ids: Tensor,
    starts: list[int],
    prev: list[int],
    targets: list[list[int]],
    num_tokens: int,
    layout: str,
) -> SequenceBatch:
    logit_index, target_ids, seq_index = _plan(starts, prev, targets)
    return SequenceBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logit_index=torch.tensor(logit_index, dtype=torch.long),
        target_ids=torch.tensor(target_ids, dtype=torch.long),
        sequence_index=torch.tensor(seq_index, dtype=torch.long),
        num_sequences=len(targets),
        completion_lengths=torch.tensor([len(t) for t in targets], dtype=torch.long),
        num_tokens=num_tokens,
        layout=layout,
    )


def _check(groups: Sequence[Group]) -> int:
    if not groups:
        raise ValueError("cannot collate an empty batch")
    k = len(groups[0][1])
    for prompt, completions in groups:
        if len(completions) != k:
            raise ValueError("every group of a batch needs the same number of completions")
        if not prompt or any(not c for c in completions):
            raise ValueError("prompts and completions must have at least one token")
    return k


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def collate_padded(groups: Sequence[Group], pad_id: int, pad_to_multiple_of: int | None = None) -> SequenceBatch:
    """One right-padded row per (prompt, completion); row s is sequence s."""
    k = _check(groups)
    seqs = [(groups[g][0], groups[g][1][c]) for c in range(k) for g in range(len(groups))]
    width = _round_up(max(len(p) + len(c) for p, c in seqs), pad_to_multiple_of)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    starts, prev, targets = [], [], []
    for r, (p, c) in enumerate(seqs):
        n = len(p) + len(c)
        ids[r, :n] = torch.tensor(p + list(c))
        mask[r, :n] = 1
        starts.append(r * width + len(p))
        prev.append(r * width + len(p) - 1)
        targets.append(list(c))
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return _finish(ids, mask, positions, starts, prev, targets, int(mask.sum()), "padded")


def collate_packed(groups: Sequence[Group], pad_id: int, pad_to_multiple_of: int | None = None) -> SequenceBatch:
    """All (prompt, completion) sequences back to back in one row; positions restart per sequence."""
    k = _check(groups)
    seqs = [(groups[g][0], groups[g][1][c]) for c in range(k) for g in range(len(groups))]
    flat: list[int] = []
    positions: list[int] = []
    starts, prev, targets = [], [], []
    for p, c in seqs:
        offset = len(flat)
        flat.extend(p)
        flat.extend(c)
        positions.extend(range(len(p) + len(c)))
        starts.append(offset + len(p))
        prev.append(offset + len(p) - 1)
        targets.append(list(c))
    n = len(flat)
    width = _round_up(n, pad_to_multiple_of)
    if width > n:  # padding continues counting positions as its own sequence: it never attends to real tokens
        flat.extend([pad_id] * (width - n))
        positions.extend(range(width - n))
    ids = torch.tensor([flat], dtype=torch.long)
    return _finish(ids, None, torch.tensor([positions], dtype=torch.long), starts, prev, targets, n, "packed")


def collate_prefix_shared(groups: Sequence[Group], pad_id: int, pad_to_multiple_of: int | None = None) -> SequenceBatch:
    """One row per group, ``[prompt, c_1, …, c_K]``, with a 4D mask isolating the completions from each other."""
    k = _check(groups)
    width = _round_up(max(len(p) + sum(len(c) for c in cs) for p, cs in groups), pad_to_multiple_of)
    rows = len(groups)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    positions = torch.zeros((rows, width), dtype=torch.long)
    segment = torch.full((rows, width), -1, dtype=torch.long)  # 0 = prompt, k+1 = completion k, -1 = pad
    starts = [0] * (rows * k)
    prev = [0] * (rows * k)
    targets: list[list[int]] = [[] for _ in range(rows * k)]
    real = 0
    for g, (p, cs) in enumerate(groups):
        ids[g, : len(p)] = torch.tensor(p)
        positions[g, : len(p)] = torch.arange(len(p))
        segment[g, : len(p)] = 0
        col = len(p)
        for c, comp in enumerate(cs):
            ids[g, col : col + len(comp)] = torch.tensor(comp)
            positions[g, col : col + len(comp)] = torch.arange(len(p), len(p) + len(comp))
            segment[g, col : col + len(comp)] = c + 1
            s = c * rows + g
            starts[s], prev[s], targets[s] = g * width + col, g * width + len(p) - 1, list(comp)
            col += len(comp)
        real += col
    q, kv = segment.unsqueeze(-1), segment.unsqueeze(-2)  # (R, T, 1), (R, 1, T)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    visible = (kv == 0) | (kv == q)
    mask = causal & visible & (q >= 0) & (kv >= 0)
    mask |= torch.eye(width, dtype=torch.bool)  # padding queries see themselves: no all-masked (NaN) rows
    return _finish(ids, mask.unsqueeze(1), positions, starts, prev, targets, real, "prefix_shared")


COLLATORS = {"padded": collate_padded, "packed": collate_packed, "prefix_shared": collate_prefix_shared}


def collate_sequences(
    groups: Sequence[Group], layout: str, pad_id: int, pad_to_multiple_of: int | None = None
) -> SequenceBatch:
    """Dispatch to the collator of ``layout``."""
    if layout not in COLLATORS:
        raise ValueError(f"unknown layout '{layout}' (known: {', '.join(LAYOUTS)})")
    return COLLATORS[layout](groups, pad_id, pad_to_multiple_of)


def attach_kl_partners(examples: Sequence[TokenizedExample]) -> list[TokenizedExample]:
    """Give each unpaired example a mismatched completion: the next example's (cyclically, in dataset order).

    KTO's reference point z is estimated from mismatched pairs (x, y′) (Ethayarajh et al. 2024, §4.1); TRL
    builds them by shifting completions over consecutive rows before shuffling. Fixing the partner by dataset
    position makes z's inputs deterministic, so reference log-probs of the partners can be cached.
    """
    n = len(examples)
    if n < 2:
        raise DataError(
            f"KTO's KL estimate pairs each completion with another prompt: it needs at least two "
            f"unpaired examples, got {n}"
        )
    out = []
    for i, ex in enumerate(examples):
        partner = examples[(i + 1) % n].completions[0]
        out.append(replace(ex, completions=(ex.completions[0], partner)))
    return out


def collate_examples(
    examples: Sequence[TokenizedExample],
    batch_kind: str,
    layout: str,
    pad_id: int,
    pad_to_multiple_of: int | None = None,
) -> ExampleBatch:
    """Tokenised examples → :class:`ExampleBatch`; each example is one group (its prompt, its completions).

    ``batch_kind="pair"``: completions (chosen, rejected). ``"ranking"``: K ranked completions.
    ``"demonstration"``: (completion,), the target of supervised fine-tuning. ``"unpaired"``:
    (completion,) or, after
    :func:`attach_kl_partners`, (completion, mismatched completion) — then ``with_kl`` is set.
    """
    n = len(examples)
    if batch_kind == "pair":
        if any(len(ex.completions) != 2 for ex in examples):
            raise ValueError("pair batches need exactly two completions (chosen, rejected) per example")
    elif batch_kind == "ranking":
        return _collate_rankings(examples, layout, pad_id, pad_to_multiple_of)
    elif batch_kind == "demonstration":
        if any(len(ex.completions) != 1 for ex in examples):
            raise ValueError("demonstration batches need exactly one completion per example")
    elif batch_kind == "unpaired":
        if any(ex.label is None for ex in examples):
            raise ValueError("unpaired batches need a label on every example")
        if len({len(ex.completions) for ex in examples}) != 1 or len(examples[0].completions) not in (1, 2):
            raise ValueError("unpaired examples need one completion (two with a KL partner), all alike")
    else:
        raise ValueError(f"unknown batch kind '{batch_kind}'")
    groups: list[Group] = [(ex.prompt_ids, list(ex.completions)) for ex in examples]
    sequences = collate_sequences(groups, layout, pad_id, pad_to_multiple_of)
    probs = [ex.prob for ex in examples]
    margins = [ex.margin for ex in examples]
    annotators = [ex.annotator for ex in examples]
    return ExampleBatch(
        batch_kind=batch_kind,
        sequences=sequences,
        num_examples=n,
        index=torch.tensor([ex.index for ex in examples], dtype=torch.long),
        weight=torch.tensor([ex.weight for ex in examples], dtype=torch.float32),
        prob=None if all(p is None for p in probs) else torch.tensor([1.0 if p is None else p for p in probs]),
        label=torch.tensor([ex.label for ex in examples]) if batch_kind == "unpaired" else None,
        margin=None if all(m is None for m in margins) else torch.tensor([m or 0.0 for m in margins]),
        with_kl=batch_kind == "unpaired" and len(examples[0].completions) == 2,
        annotator=None if any(a is None for a in annotators) else torch.tensor(annotators, dtype=torch.long),
    )


def _collate_rankings(
    examples: Sequence[TokenizedExample], layout: str, pad_id: int, pad_to_multiple_of: int | None
) -> ExampleBatch:
    """Rankings of K_g responses: every list padded to the batch's largest K with copies of its last response
    (``meta["mask"]`` False there), so sequence ``k·G + g`` is still slot k of row g; ``meta["scores"]`` (G, K)."""
    if any(ex.scores is None or len(ex.scores) != len(ex.completions) for ex in examples):
        raise ValueError("ranking batches need one score per completion on every example")
    k = max(len(ex.completions) for ex in examples)
    groups: list[Group] = [
        (ex.prompt_ids, list(ex.completions) + [ex.completions[-1]] * (k - len(ex.completions))) for ex in examples
    ]
    scores = torch.tensor([list(ex.scores) + [0.0] * (k - len(ex.scores)) for ex in examples], dtype=torch.float32)
    mask = torch.tensor([[j < len(ex.completions) for j in range(k)] for ex in examples])
    return ExampleBatch(
        batch_kind="ranking",
        sequences=collate_sequences(groups, layout, pad_id, pad_to_multiple_of),
        num_examples=len(examples),
        index=torch.tensor([ex.index for ex in examples], dtype=torch.long),
        weight=torch.tensor([ex.weight for ex in examples], dtype=torch.float32),
        meta={"scores": scores, "mask": mask},
    )
