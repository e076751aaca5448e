"""One forward pass: a batch → the scorer's values (and reference log-probs) → the objective's inputs → (loss, metrics).

This is the only place where the LM world (token batches, models) meets the objectives' world (tensors of
sequence log-probs, or rewards). The scorer is what turns a batch into one value per sequence: summed log-probs
of the policy (:class:`~preflab.models.logprobs.SequenceScorer`) or a reward model's rewards
(:class:`~preflab.models.reward.RewardScorer`); the objective's input kind says which it gets. Sequences of a
batch are ordered ``k·G + g`` (completion slot k of example g), so slot 0 is ``chosen`` (pairs) or the completion
(unpaired, demonstrations), slot 1 ``rejected`` or the KL partner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch
from ..models.policy import Reference
from ..objectives import (
    DemonstrationInputs,
    ObjectiveSpec,
    PairInputs,
    PreferenceEmbeddingInputs,
    RankingInputs,
    RewardPairInputs,
    UnpairedInputs,
)
from ..objectives.game_inputs import GroupPairInputs, IterativePairInputs, SampleInputs, XPOInputs


def _slots(values: Tensor, batch: ExampleBatch) -> list[Tensor]:
    g = batch.num_examples
    return [values[k * g : (k + 1) * g] for k in range(batch.sequences.num_sequences // g)]


def pair_inputs(batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None) -> PairInputs:
    """Slot 0 = chosen, slot 1 = rejected; lengths are completion token counts; win rates (SPPO's P̂(y ≻ π_t))
    when the schedule estimated them."""
    pc, pr = _slots(policy, batch)
    rc, rr = _slots(ref, batch) if ref is not None else (None, None)
    lc, lr = _slots(batch.sequences.completion_lengths, batch)
    wc, wr = (batch.winrate[:, 0], batch.winrate[:, 1]) if batch.winrate is not None else (None, None)
    return PairInputs(
        policy_chosen=pc,
        policy_rejected=pr,
        ref_chosen=rc,
        ref_rejected=rr,
        chosen_len=lc,
        rejected_len=lr,
        prob=batch.prob,
        weight=batch.weight,
        chosen_winrate=wc,
        rejected_winrate=wr,
    )


def unpaired_inputs(
    batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> UnpairedInputs:
    """Slot 0 = the completion; slot 1 (when present) = the mismatched completion for KTO's KL estimate."""
    pol = _slots(policy, batch)
    refs = _slots(ref, batch) if ref is not None else [torch.zeros_like(p) for p in pol]
    length = _slots(batch.sequences.completion_lengths, batch)[0]
    kl = batch.with_kl
    return UnpairedInputs(
        policy=pol[0],
        ref=refs[0],
        label=batch.label,
        length=length,
        policy_kl=pol[1] if kl else None,
        ref_kl=refs[1] if kl else None,
        weight=batch.weight,
    )


def demonstration_inputs(
    batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> DemonstrationInputs:
    """Slot 0 = the demonstrated completion: its summed log-prob and its completion token count (SFT)."""
    return DemonstrationInputs(
        policy=policy, length=batch.sequences.completion_lengths.to(policy.device), weight=batch.weight
    )


def iterative_pair_inputs(
    batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> IterativePairInputs:
    """Pairs plus the previous iterate's log-probs (``anchor_*`` = log π_t) and the win rates P̂(y ≻ π_t)
    (``win_*``, DNO's r_t) for INPO and DNO; ``ref_*`` = log π_ref."""
    base = pair_inputs(batch, policy, ref)
    ac, ar = _slots(anchor, batch) if anchor is not None else (None, None)
    return IterativePairInputs(
        **vars(base),
        anchor_chosen=ac,
        anchor_rejected=ar,
        win_chosen=base.chosen_winrate,
        win_rejected=base.rejected_winrate,
    )


def reward_pair_inputs(
    batch: ExampleBatch, rewards: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> RewardPairInputs:
    """Slot 0 = r(x, y_w), slot 1 = r(x, y_l), with the pairs' margins and soft labels (a tie is p = ½)."""
    chosen, rejected = _slots(rewards, batch)
    return RewardPairInputs(
        chosen_reward=chosen, rejected_reward=rejected, margin=batch.margin, prob=batch.prob, weight=batch.weight
    )


def ranking_inputs(
    batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> RankingInputs:
    """(G, K) log-probs of each list's K (padded) responses, with their scores, mask and lengths."""

    def grid(values: Tensor) -> Tensor:
        return torch.stack(_slots(values, batch), dim=1)

    dev = policy.device
    return RankingInputs(
        policy=grid(policy),
        ref=grid(ref) if ref is not None else None,
        scores=batch.meta["scores"].to(dev),
        mask=batch.meta["mask"].to(dev),
        length=grid(batch.sequences.completion_lengths).to(policy.dtype),
        weight=batch.weight,
    )


def sample_inputs(
    batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> SampleInputs:
    """On-policy samples (:mod:`preflab.training.selfplay`): sequence k·G + g is sample k of prompt g; the
    schedule put each sample's judged reward, its prompt group and (Nash-MP) log π^k in ``batch.meta``."""
    dev = policy.device
    meta = batch.meta
    anchor = anchor if anchor is not None else meta.get("anchor")
    return SampleInputs(
        policy=policy,
        reward=meta["reward"].to(dev),
        ref=ref,
        anchor=anchor.to(dev) if anchor is not None else None,
        group=meta["group"].to(dev),
    )


def xpo_inputs(batch: ExampleBatch, policy: Tensor, ref: Tensor | None, anchor: Tensor | None = None) -> XPOInputs:
    """Online pairs of one policy and one π_ref sample (the online schedule's XPO mode): ``policy_explore`` is
    log π of the π_ref sample ỹ, in whichever slot the judge put it (``batch.meta["explore_slot"]``)."""
    base = pair_inputs(batch, policy, ref)
    slot = batch.meta["explore_slot"].to(policy.device)
    explore = torch.where(slot == 0, base.policy_chosen, base.policy_rejected)
    return XPOInputs(**vars(base), policy_explore=explore)


def preference_embedding_inputs(
    batch: ExampleBatch, embeddings: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> PreferenceEmbeddingInputs:
    """Slot 0 = v(x, y_w), slot 1 = v(x, y_l): (B, 2k) preference embeddings (GPM), with the soft labels."""
    chosen, rejected = _slots(embeddings, batch)
    return PreferenceEmbeddingInputs(
        chosen_embedding=chosen, rejected_embedding=rejected, prob=batch.prob, weight=batch.weight
    )


def group_pair_inputs(
    batch: ExampleBatch, rewards: Tensor, ref: Tensor | None, anchor: Tensor | None = None
) -> GroupPairInputs:
    """Slot 0 = r_k(x, y_w), slot 1 = r_k(x, y_l): (B, K) rewards of the K group heads, with each pair's
    annotator id (MaxMin-RLHF's EM)."""
    chosen, rejected = _slots(rewards, batch)
    if batch.annotator is None:
        raise ValueError("group_pairs inputs need the pairs' annotator ids (ExampleBatch.annotator)")
    return GroupPairInputs(
        reward_chosen=chosen, reward_rejected=rejected, annotator=batch.annotator, weight=batch.weight
    )


INPUT_BUILDERS: dict[str, Callable[..., Any]] = {  # (batch, policy, ref, anchor) -> the objective's inputs
    "pair": pair_inputs,
    "unpaired": unpaired_inputs,
    "iterative_pair": iterative_pair_inputs,
    "reward_pair": reward_pair_inputs,
    "samples": sample_inputs,
    "ranking": ranking_inputs,
    "xpo_pair": xpo_inputs,
    "preference_embedding": preference_embedding_inputs,
    "group_pairs": group_pair_inputs,
    "demonstration": demonstration_inputs,
}
# The batch kind (ExampleBatch.batch_kind, preflab.data.collate) each objective input kind is built from.
BATCH_KIND_OF_INPUTS: dict[str, str] = {
    "pair": "pair",
    "unpaired": "unpaired",
    "iterative_pair": "pair",
    "reward_pair": "pair",
    "samples": "samples",
    "xpo_pair": "pair",
    "ranking": "ranking",
    "rollout": "rollout",
    "preference_embedding": "pair",
    "group_pairs": "pair",
    "demonstration": "demonstration",
}


def objective_loss(
    spec: ObjectiveSpec, params: Any, scorer: Callable[[Any], Tensor], reference: Reference, batch: ExampleBatch
) -> tuple[Tensor, dict[str, Any]]:
    """Run policy (with grad) and reference (without) on ``batch`` and apply the objective."""
    if spec.inputs == "rollout":  # per-token inputs: the rollout carries π_old, π_ref and the advantages
        from .rollout_batches import rollout_loss

        return rollout_loss(spec, params, scorer, reference, batch)
    if spec.inputs not in INPUT_BUILDERS:
        raise ValueError(
            f"objective '{spec.name}' consumes '{spec.inputs}' inputs; the LM trainer builds "
            f"{', '.join(INPUT_BUILDERS)}"
        )
    policy = scorer(batch.sequences).float()
    ref = reference.logprobs(batch) if spec.needs_ref else None
    inputs = INPUT_BUILDERS[spec.inputs](batch, policy, ref, reference.anchor(batch))
    loss, metrics = spec.fn(inputs, params)
    if batch.meta.get("on_policy") and ref is not None and "kl" not in metrics:
        # every sequence was just sampled from π at these weights: mean log π/π_ref is KL(π‖π_ref) (k1 estimator)
        metrics = {**metrics, "kl": (policy.detach() - ref.float()).mean()}
    return loss, metrics


class MetricMeans:
    """Example-weighted running means of scalar metrics (loss included). A non-finite value (e.g. KTO's
    mean reward over desirable examples in a batch that has none) is left out of its key's mean."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, metrics: dict[str, Any], weight: float) -> None:
        for key, value in metrics.items():
            if isinstance(value, Tensor):
                if value.numel() != 1:
                    continue
                value = value.item()
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            self.sums.setdefault(key, 0.0)
            self.weights.setdefault(key, 0.0)
            if math.isfinite(value):
                self.sums[key] += float(value) * weight
                self.weights[key] += weight

    def means(self) -> dict[str, float]:
        return {k: (v / self.weights[k] if self.weights[k] > 0 else float("nan")) for k, v in self.sums.items()}


@torch.no_grad()
def evaluate(
    spec: ObjectiveSpec,
    params: Any,
    scorer: Callable[[Any], Tensor],
    reference: Reference,
    batches: Iterable[ExampleBatch],
    device: torch.device,
    reduce: Callable[[MetricMeans], dict[str, float]] = MetricMeans.means,
) -> dict[str, float]:
    """Example-weighted mean loss and metrics over ``batches`` (this process's share), reduced across processes."""
    means = MetricMeans()
    for batch in batches:
        batch = batch.to(device)
        loss, metrics = objective_loss(spec, params, scorer, reference, batch)
        means.add({**metrics, "loss": loss}, batch.num_examples)
    return reduce(means)
