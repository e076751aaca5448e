"""A rollout's completions as training batches: per-token tensors padded by completion length, the batch of
completions (a prompt's G completions share its row under ``prefix_shared``), the no-grad scoring pass that gives
a rollout its per-token log π_old, log π_ref and critic values (or log π_old from the sampling pass itself), the
objective on a minibatch, the reference's per-token log-probs, and a rollout packed into flat tensors for a
checkpoint. Used by :mod:`preflab.training.rollouts` (the schedule) and :mod:`preflab.training.step` (the loss)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch, collate_sequences
from ..data.tokenize import TokenizedExample
from ..errors import ConfigError
from ..objectives.policy_gradient import RolloutInputs

ScoreFn = Callable[[ExampleBatch], tuple[Tensor, Tensor | None]]  # -> per-token log π (N,), values (N,) | None
RefFn = Callable[[ExampleBatch], Tensor | None]  # -> per-token log π_ref (N,)


def to_padded(flat: Tensor, batch: Any) -> Tensor:
    """Per-token values in plan order (N, …) → (S, T, …) right-padded by completion length."""
    seqs = batch.sequences if isinstance(batch, ExampleBatch) else batch
    lengths = seqs.completion_lengths.to(flat.device)
    starts = torch.cumsum(lengths, 0) - lengths
    index = seqs.sequence_index.to(flat.device)
    pos = torch.arange(flat.shape[0], device=flat.device) - starts[index]
    out = flat.new_zeros((seqs.num_sequences, int(lengths.max()) if lengths.numel() else 0, *flat.shape[1:]))
    out[index, pos] = flat
    return out


def rollout_batch(examples: Sequence[TokenizedExample], layout: str, pad_id: int) -> tuple[ExampleBatch, list[int]]:
    """Completions (one per example) as an :class:`ExampleBatch` of batch kind ``rollout``, and the order of
    ``examples`` its sequences follow. With ``prefix_shared``, completions of one prompt share its row when every
    prompt of the batch has the same number of them (a whole rollout, or whole groups): the prompt is encoded
    once for its G completions; otherwise each completion has its own row."""
    order = list(range(len(examples)))
    groups: list[tuple[list[int], list[list[int]]]] = [(ex.prompt_ids, [ex.completions[0]]) for ex in examples]
    if layout == "prefix_shared":
        by_prompt: dict[tuple[int, ...], list[int]] = {}
        for i, ex in enumerate(examples):
            by_prompt.setdefault(tuple(ex.prompt_ids), []).append(i)
        members = list(by_prompt.values())
        if len({len(m) for m in members}) == 1 and len(members[0]) > 1:
            k = len(members[0])
            groups = [(examples[m[0]].prompt_ids, [examples[i].completions[0] for i in m]) for m in members]
            order = [m[c] for c in range(k) for m in members]  # sequence c·R + g = completion c of prompt g
    chosen = [examples[i] for i in order]
    batch = ExampleBatch(
        batch_kind="rollout",
        sequences=collate_sequences(groups, layout, pad_id),
        num_examples=len(examples),
        index=torch.tensor([ex.index for ex in chosen], dtype=torch.long),
        weight=torch.tensor([ex.weight for ex in chosen], dtype=torch.float32),
    )
    return batch, order


def score_rows(
    examples: list[TokenizedExample],
    width: int,
    score_fn: ScoreFn | None,
    ref_fn: RefFn,
    batch_size: int,
    layout: str,
    pad_id: int,
) -> list[dict[str, Tensor]]:
    """Per-token log π_old (``score_fn``; NaN without one), log π_ref (``ref_fn``), mask and critic values of
    ``examples``, no grad, ``batch_size`` completions per pass: one dict of (T,) tensors per example, zero-padded
    to ``width``."""
    parts: dict[str, list[Tensor]] = {}
    step = max(batch_size, 1)
    for start in range(0, len(examples), step):
        part = examples[start : start + step]
        batch, order = rollout_batch(part, layout, pad_id)
        back = torch.argsort(torch.tensor(order))  # sequence order → the order of ``part``
        with torch.no_grad():
            if score_fn is not None:
                tok, values = score_fn(batch)
            else:
                tok, values = torch.full((int(batch.sequences.completion_lengths.sum()),), math.nan), None
            ref = ref_fn(batch)
        got = {
            "old_logprobs": tok,
            "ref_logprobs": ref,
            "old_values": values,
            "mask": torch.ones_like(tok, dtype=torch.bool),
        }
        for key, flat in got.items():
            if flat is None:
                continue
            padded = to_padded(flat.detach().float().cpu(), batch)[back]
            padded = torch.nn.functional.pad(padded, (0, width - padded.shape[1]))
            parts.setdefault(key, []).append(padded)
    table = {k: torch.cat(v) for k, v in parts.items()}
    return [{k: v[i] for k, v in table.items()} for i in range(len(examples))]


def pass_logprobs_usable(samples: list[list[Any]], examples: list[TokenizedExample]) -> bool:
    """Whether every completion brought its per-token log π_old from the sampling pass (the sampler returns
    them where they are the policy's own: the rollout engine decoding with the model's own weights) for
    exactly the tokens trained on (no empty completion, nothing cut). A critic still needs a forward pass: the
    schedule checks that."""
    comps = [c for s in samples for c in s]
    if not all(c.token_ids and c.token_logprobs is not None for c in comps):
        return False
    if any(len(c.token_logprobs) != len(c.token_ids) for c in comps):
        return False
    return all(ex.prompt_cut == 0 and ex.completion_cut == 0 for ex in examples)


def pass_logprobs(samples: list[list[Any]], width: int) -> Tensor:
    """(N, width) per-token log-probs of the sampling pass, zero-padded like the scoring pass's."""
    comps = [c for s in samples for c in s]
    out = torch.zeros((len(comps), width), dtype=torch.float32)
    for k, c in enumerate(comps):
        out[k, : len(c.token_logprobs)] = torch.tensor(c.token_logprobs, dtype=torch.float32)
    return out


def rollout_loss(spec: Any, params: Any, scorer: Any, reference: Any, batch: ExampleBatch) -> tuple[Tensor, dict]:
    """The objective on a minibatch of a rollout: per-token log π (with grad) and critic values from one forward."""
    tok, values = scorer(batch.sequences, per_token=True)
    data = {k: v.to(tok.device) for k, v in batch.meta["rollout"].items()}
    logp = to_padded(tok.float(), batch)
    width = logp.shape[1]
    data = {k: v[:, :width] for k, v in data.items()}
    padded_values = None if values is None else to_padded(values.float(), batch)
    hl = padded_values is not None and padded_values.dim() == 3
    inputs = RolloutInputs(
        logprobs=logp,
        old_logprobs=data["old_logprobs"],
        advantages=data["advantages"],
        mask=data["mask"].bool(),
        ref_logprobs=data.get("ref_logprobs"),
        values=None if hl else padded_values,
        value_logits=padded_values if hl else None,
        old_values=data.get("old_values"),
        returns=data.get("returns"),
    )
    if bool(torch.isnan(inputs.old_logprobs[inputs.mask]).any()):  # on-policy: π_old is this forward's policy
        inputs.old_logprobs = logp.detach()
    loss, metrics = spec.fn(inputs, params)
    m = inputs.mask.float()
    metrics["entropy"] = (-logp.detach() * m).sum() / m.sum().clamp_min(1)  # per-token estimate, E[−log π(y_t)]
    return loss, metrics


def reference_token_logprobs(reference: Any, batch: ExampleBatch) -> Tensor | None:
    """Per-token log π_ref (N,) of ``batch`` from the run's reference (a frozen copy, or the LoRA base with the
    adapters off), no grad, eval mode; None without a reference. A cached reference holds sequence sums only."""
    from ..models.policy import AdapterDisabledReference, FrozenCopyReference, NoReference

    if isinstance(reference, NoReference) or reference is None:
        return None
    if not isinstance(reference, (FrozenCopyReference, AdapterDisabledReference)):
        raise ConfigError(
            f"the rollout schedule needs per-token reference log-probs; reference.mode "
            f"'{reference.mode}' has none (use frozen_copy or adapters_disabled)",
            field="reference.mode",
        )
    scorer = reference.scorer
    was_training = scorer.training
    scorer.eval()
    try:
        with torch.no_grad(), reference.autocast():
            if isinstance(reference, AdapterDisabledReference):
                with scorer.model.disable_adapter():
                    return scorer(batch.sequences, per_token=True)[0].float()
            return scorer(batch.sequences, per_token=True)[0].float()
    finally:
        scorer.train(was_training)


@dataclass
class RolloutData:
    """One rollout: its completions (one per example, ``index`` = position in the rollout), their per-token
    tensors (N, T) and the rollout's metrics."""

    examples: list[TokenizedExample]
    tensors: dict[str, Tensor]
    metrics: dict[str, float]


def pack_rollout(data: RolloutData) -> dict[str, Tensor]:
    """A rollout as flat tensors for a checkpoint: every prompt and completion id, their lengths, the per-token
    tensors (``t.<name>``)."""
    seqs = [s for ex in data.examples for s in (ex.prompt_ids, ex.completions[0])]
    out = {
        "ids": torch.tensor([tok for s in seqs for tok in s], dtype=torch.long),
        "lengths": torch.tensor([len(s) for s in seqs], dtype=torch.long).reshape(-1, 2),
    }
    out.update({f"t.{k}": v for k, v in data.tensors.items()})
    return out


def unpack_rollout(tensors: dict[str, Tensor]) -> RolloutData:
    """:func:`pack_rollout` undone (the metrics come back from the checkpoint's state)."""
    ids = tensors["ids"].tolist()
    examples, at = [], 0
    for row, (lp, lc) in enumerate(tensors["lengths"].tolist()):
        examples.append(TokenizedExample(row, ids[at : at + lp], (ids[at + lp : at + lp + lc],)))
        at += lp + lc
    data = {k[2:]: v for k, v in tensors.items() if k.startswith("t.")}
    if "mask" in data:
        data["mask"] = data["mask"].bool()
    return RolloutData(examples, data, {})
