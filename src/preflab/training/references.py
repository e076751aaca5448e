"""The reference policy of a run (π_ref in every objective that has one): none, the policy with its adapters
disabled, a frozen copy, or a table of log-probs scored once before the first update (``reference.mode``), and
the previous-iterate scorer of iterative rounds. :func:`preflab.training.build.build_parts` asks for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ..data.collate import ExampleBatch
from ..errors import CheckpointError
from ..files import widen_modes
from ..models.compile import is_compiled
from ..models.logprobs import SequenceScorer
from ..models.policy import (
    AdapterDisabledReference,
    CachedReference,
    FrozenCopyReference,
    NoReference,
    Reference,
    adapters_are_identity,
    build_reference_table,
    examples_fingerprint,
    has_active_dropout,
    is_peft,
)


def reference_for_mode(
    mode: str,
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    passes: list[list[Any]],
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> Reference:
    """The reference policy of ``mode``. ``passes`` (train and eval examples) are what a cache must cover."""
    train = cfg.train
    if mode == "none":
        return NoReference()
    if mode == "adapters_disabled":
        return AdapterDisabledReference(scorer, acc.autocast)
    if mode == "frozen_copy":
        ref = FrozenCopyReference(policy, scorer.chunked_head, train.logprob_chunk_size, acc.autocast)
        ref.scorer.to(acc.device)
        return ref
    return cached_reference(cfg, acc, scorer, policy, passes, batches)


def initial_policy(cfg: Any, acc: Any, scorer: SequenceScorer, policy: torch.nn.Module) -> Reference:
    """What scores the reference cache: the policy as it is before its first update (for LoRA whose adapters
    still add nothing, with adapters on: the same kernels as the first training step, so its loss is exactly
    the one at π = π_ref), else the base model (adapters off). A compiled policy without dropout is scored
    through its training graph (one compilation, not a second one for inference)."""
    if is_peft(policy) and not adapters_are_identity(policy):
        return AdapterDisabledReference(scorer, acc.autocast)
    return policy_itself(cfg, acc, scorer, policy)


def policy_itself(cfg: Any, acc: Any, scorer: SequenceScorer, policy: torch.nn.Module) -> FrozenCopyReference:
    """The policy as it is when scored (no copy: eval mode, no grad, adapters on); a compiled policy without dropout
    through its training graph (one compilation, not a second one for inference)."""
    training_graph = is_compiled(policy) and not has_active_dropout(policy)
    return FrozenCopyReference(
        policy,
        scorer.chunked_head,
        cfg.train.logprob_chunk_size,
        acc.autocast,
        copy=False,
        training_graph=training_graph,
    )


def cached_reference(
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    passes: list[list[Any]],
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> CachedReference:
    """Score every (row, completion slot) once with the initial policy — before any update or checkpoint
    load — and keep the table in ``output_dir/reference_logprobs.safetensors`` (reused when the data match)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    everything = [ex for part in passes for ex in part]
    fingerprint = examples_fingerprint(everything, extra=f"{cfg.model.name_or_path}|{cfg.objective.name}")
    path = Path(cfg.output_dir) / "reference_logprobs.safetensors"
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            stored = (f.metadata() or {}).get("fingerprint")
        if stored == fingerprint:
            return CachedReference(load_file(str(path))["table"])
    if cfg.train.resume and not is_peft(policy) and any((Path(cfg.output_dir) / "checkpoints").glob("step-*")):
        raise CheckpointError(
            "resuming full fine-tuning with a cached reference needs the run's own reference "
            "log-probs (the initial weights are gone)",
            file=str(path),
        )
    source = initial_policy(cfg, acc, scorer, policy)
    rows = max(ex.index for ex in everything) + 1
    table = build_reference_table(source, (b.to(acc.device) for part in passes for b in batches(part)), rows)
    table = merge_tables(acc, table)
    if acc.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"table": table}, str(tmp), metadata={"fingerprint": fingerprint})
        widen_modes(tmp)
        tmp.replace(path)
    return CachedReference(table)


def merge_tables(acc: Any, table: torch.Tensor) -> torch.Tensor:
    """Each process scored its share of the rows (NaN elsewhere): every process gets the whole table."""
    filled = (~torch.isnan(table)).double()
    if acc.num_processes > 1:
        table = acc.reduce(torch.nan_to_num(table.double()).to(acc.device), "sum").cpu()
        filled = acc.reduce(filled.to(acc.device), "sum").cpu()
    return torch.where(filled > 0, table.double() / filled.clamp_min(1), torch.nan).float()


def policy_now(
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> Callable[[list[Any]], torch.Tensor]:
    """Scores a round's pairs with the policy as it is now (eval mode, adapters on, no grad): the round's
    previous-iterate reference π_t, exact because π_t does not change during the round."""
    source = policy_itself(cfg, acc, scorer, policy)

    def score(examples: list[Any]) -> torch.Tensor:
        table = build_reference_table(source, (b.to(acc.device) for b in batches(examples)), len(examples))
        return merge_tables(acc, table)

    def sequences(batch: ExampleBatch) -> torch.Tensor:  # one batch's sequences (Nash-MP's log π^k), on the CPU
        with source.autocast():
            return source.logprobs(batch.to(acc.device)).float().cpu()

    score.sequences = sequences  # type: ignore[attr-defined]
    return score
