"""Listwise objectives over rankings of K responses: PRO (Plackett–Luce) and LiPO-λ (lambda-weighted pairs).

Inputs are :class:`RankingInputs`: ``policy``/``ref`` sequence log-probs (B, K), ``scores`` (B, K) with higher =
better, ``mask`` (B, K) False for padding, ``length`` (B, K) completion lengths, ``weight`` (B,) per list.
Metrics: ``rewards/chosen`` / ``rewards/rejected`` are the mean implicit rewards of each list's best / worst
response, ``rewards/accuracies`` the fraction of strictly ordered pairs whose rewards agree with the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, require, weighted_mean
from .base import Metrics, RankingInputs, register


def _valid_mask(inputs: RankingInputs) -> Tensor:
    """The (B, K) boolean mask of real responses; checks shapes and that real responses have finite scores."""
    shape = inputs.policy.shape
    if inputs.policy.dim() != 2:
        raise ConfigError(f"ranking log-probs must have shape (B, K), got {tuple(shape)}", field="policy")
    for name in ("ref", "scores", "mask", "length"):
        value = getattr(inputs, name)
        if value is not None and value.shape != shape:
            raise ConfigError(f"shape {tuple(value.shape)} differs from policy's {tuple(shape)}", field=name)
    valid = torch.ones(shape, dtype=torch.bool) if inputs.mask is None else inputs.mask.bool()
    valid = valid.to(inputs.policy.device)
    if bool((~torch.isfinite(inputs.scores) & valid).any()):
        raise ConfigError("scores of unmasked responses must be finite", field="scores")
    return valid


def _ordered_pairs(scores: Tensor, valid: Tensor) -> Tensor:
    """(B, K, K) boolean: both real and score_i > score_j."""
    both = valid.unsqueeze(2) & valid.unsqueeze(1)
    return both & (scores.unsqueeze(2) > scores.unsqueeze(1))


def _reduce(per_list: Tensor, has_pairs: Tensor, weight: Tensor | None) -> Tensor:
    """Weighted mean over the lists that hold at least one ordered pair (others carry no preference)."""
    w = has_pairs.to(per_list.dtype)
    if weight is not None:
        w = w * weight.to(per_list.dtype)
    if not bool(has_pairs.any()):
        return (per_list * 0).sum()
    return weighted_mean(per_list, w)


def ranking_metrics(rewards: Tensor, inputs: RankingInputs, valid: Tensor, loss: Tensor) -> Metrics:
    """Best/worst implicit rewards, their margin, and pairwise ranking accuracy (detached)."""
    rewards = rewards.detach()
    neg_inf = torch.tensor(float("-inf"), dtype=inputs.scores.dtype, device=inputs.scores.device)
    best = torch.where(valid, inputs.scores, neg_inf).argmax(dim=1, keepdim=True)
    worst = torch.where(valid, -inputs.scores, neg_inf).argmax(dim=1, keepdim=True)
    pairs = _ordered_pairs(inputs.scores, valid)
    agree = (rewards.unsqueeze(2) > rewards.unsqueeze(1)) & pairs
    chosen, rejected = rewards.gather(1, best).mean(), rewards.gather(1, worst).mean()
    return {
        "loss": loss.detach(),
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margins": chosen - rejected,
        "rewards/accuracies": agree.sum().to(rewards.dtype) / pairs.sum().clamp_min(1).to(rewards.dtype),
        "logps/chosen": inputs.policy.detach().gather(1, best).mean(),
        "logps/rejected": inputs.policy.detach().gather(1, worst).mean(),
    }


@dataclass
class PROParams:
    """beta: reward scale. reference: use log-ratios to π_ref instead of raw log-probs. length_normalize:
    divide by completion length (the paper's choice). sft_weight: weight of the NLL of the best response."""

    beta: float = 1.0
    reference: bool = False
    length_normalize: bool = True
    sft_weight: float = 0.0

    def __post_init__(self) -> None:
        check_positive("beta", self.beta)
        check_positive("sft_weight", self.sft_weight, allow_zero=True)


@register("pro", PROParams, inputs="ranking", needs_ref=False)
def pro(inputs: RankingInputs, params: PROParams) -> tuple[Tensor, Metrics]:
    """PRO — Song et al. 2024, "Preference Ranking Optimization for Human Alignment": the Plackett–Luce
    negative log-likelihood of the ranking y_1 ≻ … ≻ y_n under rewards s,
        ℓ = −Σ_{k=1}^{n−1} log [ exp(s_k) / Σ_{i≥k} exp(s_i) ],
    with s = β log π(y|x)/|y| (paper; ``reference`` uses β (log π − log π_ref), optionally length-normalised),
    plus ``sft_weight`` × NLL of y_1 (per token when lengths are given). Ties are handled like Breslow's
    partial likelihood: each response's denominator holds every response scored no higher, so the loss does
    not depend on how tied responses are ordered; without ties it is exactly the Plackett–Luce sum above.
    The paper's score-difference temperature is not applied."""
    valid = _valid_mask(inputs)
    logp = inputs.policy
    if params.reference:
        logp = logp - require(inputs, "ref", "pro")
    if params.length_normalize:
        logp = logp / require(inputs, "length", "pro").to(logp.dtype)
    s = (params.beta * logp).masked_fill(~valid, 0.0)  # padding may hold anything; keep it finite
    # at_most[b, i, j]: j is real and scored no higher than i, so j is in i's Plackett–Luce denominator.
    # The diagonal keeps padding rows finite (a row of -inf would give NaN gradients through logsumexp).
    at_most = valid.unsqueeze(1) & (inputs.scores.unsqueeze(1) <= inputs.scores.unsqueeze(2))
    at_most = at_most | torch.eye(s.shape[1], dtype=torch.bool, device=s.device)
    denom = torch.logsumexp(s.unsqueeze(1).masked_fill(~at_most, float("-inf")), dim=2)
    terms = torch.where(valid, denom - s, torch.zeros_like(s))
    per_list = terms.sum(dim=1)
    has_pairs = _ordered_pairs(inputs.scores, valid).flatten(1).any(dim=1)
    if params.sft_weight > 0:
        neg_inf = torch.tensor(float("-inf"), dtype=inputs.scores.dtype, device=inputs.scores.device)
        best = torch.where(valid, inputs.scores, neg_inf).argmax(dim=1, keepdim=True)
        nll = -inputs.policy.gather(1, best).squeeze(1)
        if inputs.length is not None:
            nll = nll / inputs.length.gather(1, best).squeeze(1).to(nll.dtype)
        per_list = per_list + params.sft_weight * nll
        has_pairs = has_pairs | valid.any(dim=1)
    loss = _reduce(per_list, has_pairs, inputs.weight)
    return loss, ranking_metrics(s, inputs, valid, loss)


@dataclass
class LiPOParams:
    """beta: KL strength β of the implicit rewards β (log π − log π_ref)."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        check_positive("beta", self.beta)


def lambda_weights(labels: Tensor, rewards: Tensor, valid: Tensor) -> Tensor:
    """LambdaLoss / LiPO-λ pair weights Δ_ij = |G_i − G_j| · |1/D(τ_i) − 1/D(τ_j)| (B, K, K), with gains
    G = 2^ψ − 1, discounts D(τ) = log2(1 + τ), and τ the 1-based rank of each response under the current
    (detached) rewards, ties broken by position; padding ranks last."""
    r = rewards.detach().masked_fill(~valid, float("-inf"))
    order = torch.sort(r, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    positions = torch.arange(1, r.shape[1] + 1, device=r.device).expand_as(order)
    rank.scatter_(1, order, positions)
    inv_discount = 1.0 / torch.log2(1.0 + rank.to(rewards.dtype))
    gain = torch.exp2(labels.to(rewards.dtype)) - 1
    return (gain.unsqueeze(2) - gain.unsqueeze(1)).abs() * (inv_discount.unsqueeze(2) - inv_discount.unsqueeze(1)).abs()


@register("lipo", LiPOParams, inputs="ranking")
def lipo(inputs: RankingInputs, params: LiPOParams) -> tuple[Tensor, Metrics]:
    """LiPO-λ — Liu et al. 2024, "LiPO: Listwise Preference Optimization through Learning-to-Rank":
        ℓ = −Σ_{ψ_i > ψ_j} Δ_ij log σ(s_i − s_j),  s = β (log π(y|x) − log π_ref(y|x)),
    with labels ψ = ``scores`` and the LambdaLoss weights Δ_ij of :func:`lambda_weights`. Gains are 2^ψ − 1,
    so labels are meant to be small (the paper uses reward-model scores normalised to [0, 1] or ratings)."""
    valid = _valid_mask(inputs)
    s = (params.beta * (inputs.policy - require(inputs, "ref", "lipo"))).masked_fill(~valid, 0.0)
    pairs = _ordered_pairs(inputs.scores, valid)
    delta = lambda_weights(inputs.scores, s, valid)
    pair_loss = -F.logsigmoid(s.unsqueeze(2) - s.unsqueeze(1))
    per_list = torch.where(pairs, delta * pair_loss, torch.zeros_like(pair_loss)).flatten(1).sum(dim=1)
    loss = _reduce(per_list, pairs.flatten(1).any(dim=1), inputs.weight)
    return loss, ranking_metrics(s, inputs, valid, loss)
