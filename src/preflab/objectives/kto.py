"""KTO: prospect-theoretic alignment from unpaired binary feedback (desirable / undesirable)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, weighted_mean
from .base import Metrics, UnpairedInputs, register


@dataclass
class KTOParams:
    """beta: KL strength β. desirable_weight / undesirable_weight: λ_D, λ_U (the paper advises
    λ_D·n_D / (λ_U·n_U) ∈ [1, 4/3] for n_D desirable and n_U undesirable examples)."""

    beta: float = 0.1
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def __post_init__(self) -> None:
        check_positive("beta", self.beta)
        check_positive("desirable_weight", self.desirable_weight, allow_zero=True)
        check_positive("undesirable_weight", self.undesirable_weight, allow_zero=True)


def kl_estimate(inputs: UnpairedInputs) -> Tensor:
    """z = max(0, mean(log π(y'|x) − log π_ref(y'|x))) over mismatched completions y', detached; 0 when the
    batch carries no mismatched completions (TRL's behaviour when the KL term is not computed)."""
    if inputs.policy_kl is None and inputs.ref_kl is None:
        return torch.zeros((), dtype=inputs.policy.dtype, device=inputs.policy.device)
    if inputs.policy_kl is None or inputs.ref_kl is None:
        missing = "policy_kl" if inputs.policy_kl is None else "ref_kl"
        raise ConfigError("the KTO KL estimate needs both policy_kl and ref_kl", field=missing)
    return (inputs.policy_kl - inputs.ref_kl).detach().mean().clamp_min(0)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over ``mask``; NaN when the mask is empty (no such examples in this batch)."""
    count = mask.sum()
    return torch.where(count > 0, (values * mask).sum() / count.clamp_min(1), torch.full_like(values[0], float("nan")))


@register("kto", KTOParams, inputs="unpaired")
def kto(inputs: UnpairedInputs, params: KTOParams) -> tuple[Tensor, Metrics]:
    """KTO — Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization":
    with h(y) = log π(y|x) − log π_ref(y|x) and the reference point z = max(0, detached batch estimate of
    KL(π‖π_ref) from mismatched completions ``policy_kl``/``ref_kl``),
        desirable:   λ_D (1 − σ(β (h − z))),      undesirable: λ_U (1 − σ(β (z − h))),
    averaged over the batch (per-example ``weight`` gives a weighted mean), as TRL's KTOTrainer.
    Metrics: ``rewards/chosen``/``rewards/rejected`` are mean implicit rewards β h over desirable/undesirable
    examples (NaN when the batch has none), ``kl`` is z, ``rewards/accuracies`` the fraction whose reward is on
    the label's side of the reference point (h > z for desirable, h < z for undesirable)."""
    label = inputs.label
    if label.dtype != torch.bool:
        if bool(((label != 0) & (label != 1)).any()):
            raise ConfigError("KTO labels must be booleans or 0/1", field="label")
        label = label.bool()
    z = kl_estimate(inputs)
    h = inputs.policy - inputs.ref
    desirable = params.desirable_weight * (1 - torch.sigmoid(params.beta * (h - z)))
    undesirable = params.undesirable_weight * (1 - torch.sigmoid(params.beta * (z - h)))
    loss = weighted_mean(torch.where(label, desirable, undesirable), inputs.weight)

    rewards = (params.beta * h).detach()
    is_d = label.to(rewards.dtype)
    chosen, rejected = _masked_mean(rewards, is_d), _masked_mean(rewards, 1 - is_d)
    correct = torch.where(label, h.detach() > z, h.detach() < z).to(rewards.dtype)
    metrics: Metrics = {
        "loss": loss.detach(),
        "kl": z,
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": correct.mean(),
        "logps/chosen": _masked_mean(inputs.policy.detach(), is_d),
        "logps/rejected": _masked_mean(inputs.policy.detach(), 1 - is_d),
        "count/chosen": is_d.sum(),
        "count/rejected": (1 - is_d).sum(),
    }
    return loss, metrics
