"""Losses for fitting reward and preference models: the Bradley–Terry reward model and the General
Preference Model (skew-symmetric preference embeddings, which can express intransitive preferences)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, neg_logsigmoid, soft_label, two_sided, weighted_mean
from .base import Metrics, PreferenceEmbeddingInputs, RewardPairInputs, register

__all__ = ["bt_reward", "gpm", "gpm_operator", "gpm_prob", "gpm_score"]


def _reward_metrics(chosen: Tensor, rejected: Tensor, loss: Tensor) -> Metrics:
    """TRL's ``RewardTrainer`` names (``accuracy``: r_w > r_l; ``margin``: mean r_w − r_l) and DPO's ``rewards/*``."""
    chosen, rejected = chosen.detach(), rejected.detach()
    accuracy = (chosen > rejected).to(chosen.dtype).mean()
    margin = (chosen - rejected).mean()
    return {
        "loss": loss.detach(),
        "accuracy": accuracy,
        "margin": margin,
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": margin,
        "rewards/accuracies": accuracy,
    }


@dataclass
class BTRewardParams:
    """center_rewards_coefficient: weight of E[(r_w + r_l)²], which pins the reward's free offset near 0
    (Eisenstein et al. 2023; TRL's ``center_rewards_coefficient``)."""

    center_rewards_coefficient: float = 0.0

    def __post_init__(self) -> None:
        check_positive("center_rewards_coefficient", self.center_rewards_coefficient, allow_zero=True)


@register("bt_reward", BTRewardParams, inputs="reward_pair", needs_ref=False)
def bt_reward(inputs: RewardPairInputs, params: BTRewardParams) -> tuple[Tensor, Metrics]:
    """Bradley–Terry reward model — Bradley & Terry 1952; Ouyang et al. 2022 (InstructGPT), with the margin of
    Touvron et al. 2023 (Llama 2): ℓ = −log σ(r(y_w) − r(y_l) − μ), μ = ``margin`` (0 when None). A soft label p
    gives p ℓ(d − μ) + (1 − p) ℓ(−d − μ) with d = r_w − r_l (each order asks its winner for the margin)."""
    d = inputs.chosen_reward - inputs.rejected_reward
    margin = inputs.margin.to(d.dtype) if inputs.margin is not None else torch.zeros_like(d)
    per_example = two_sided(lambda z: neg_logsigmoid(z - margin), d, soft_label(inputs, d.dtype))
    if params.center_rewards_coefficient > 0:
        center = (inputs.chosen_reward + inputs.rejected_reward) ** 2
        per_example = per_example + params.center_rewards_coefficient * center
    loss = weighted_mean(per_example, inputs.weight)
    return loss, _reward_metrics(inputs.chosen_reward, inputs.rejected_reward, loss)


def _check_embeddings(v: Tensor, name: str) -> int:
    if v.shape[-1] % 2:
        raise ConfigError(f"preference embeddings need an even dimension 2k, got {v.shape[-1]}", field=name)
    return v.shape[-1] // 2


def gpm_operator(dim: int, eigenvalues: Tensor | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The skew-symmetric matrix R (dim × dim) with s(a, b) = aᵀ R b: block-diagonal 2×2 blocks
    λ_l [[0, 1], [−1, 0]] (a 90° rotation scaled by λ_l ≥ 0; λ = 1 when ``eigenvalues`` is None)."""
    if dim % 2:
        raise ConfigError(f"preference embeddings need an even dimension 2k, got {dim}", field="dim")
    lam = torch.ones(dim // 2, dtype=dtype) if eigenvalues is None else eigenvalues.to(dtype)
    block = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=dtype)
    return torch.block_diag(*[lam_l * block for lam_l in lam])


def gpm_score(v_a: Tensor, v_b: Tensor, eigenvalues: Tensor | None = None) -> Tensor:
    """Preference score s(a ≻ b) = v_aᵀ R v_b = Σ_l λ_l (a_{2l} b_{2l+1} − a_{2l+1} b_{2l}) over the last axis.

    Skew-symmetric: s(a, b) = −s(b, a) and s(a, a) = 0, so P(a ≻ b) = σ(s) satisfies P(a ≻ b) + P(b ≻ a) = 1,
    yet it need not be transitive. In two dimensions s(a, b) = |a||b| sin(θ_b − θ_a): three unit vectors at
    0°, 120°, 240° give s = sin 120° > 0 for 1 ≻ 2, 2 ≻ 3 and 3 ≻ 1 — a cycle no scalar reward can express.
    With v_y = (r_y, 1), s(a, b) = r_a − r_b: the Bradley–Terry model is the special case."""
    k = _check_embeddings(v_a, "chosen_embedding")
    if v_b.shape[-1] != v_a.shape[-1]:
        raise ConfigError(f"embedding sizes differ: {v_a.shape[-1]} vs {v_b.shape[-1]}", field="rejected_embedding")
    a = v_a.unflatten(-1, (k, 2))
    b = v_b.unflatten(-1, (k, 2))
    per_block = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    if eigenvalues is not None:
        per_block = per_block * eigenvalues.to(per_block.dtype)
    return per_block.sum(-1)


def gpm_prob(v_a: Tensor, v_b: Tensor, eigenvalues: Tensor | None = None, tau: float = 1.0) -> Tensor:
    """P(a ≻ b) = σ(s(a, b) / τ)."""
    return torch.sigmoid(gpm_score(v_a, v_b, eigenvalues) / tau)


@dataclass
class GPMParams:
    """tau: temperature τ of P = σ(s/τ). normalize: L2-normalise embeddings first (the paper's default)."""

    tau: float = 0.1
    normalize: bool = True

    def __post_init__(self) -> None:
        check_positive("tau", self.tau)


@register("gpm", GPMParams, inputs="preference_embedding", needs_ref=False)
def gpm(inputs: PreferenceEmbeddingInputs, params: GPMParams) -> tuple[Tensor, Metrics]:
    """General Preference Model — Zhang et al. 2024, "Beyond Bradley-Terry Models: A General Preference Model
    for Language Model Alignment" (GPM): responses embed as v_y ∈ R^{2k}, P(y ≻ y') = σ(v_yᵀ R v_y' / τ) with
    R skew-symmetric, block-diagonal λ_l·(90° rotation), λ_l ≥ 0 optionally prompt-dependent (``eigenvalues``).
    Loss: −log σ(s(y_w, y_l)/τ), or its soft-label expectation. See :func:`gpm_score`."""
    v_w, v_l = inputs.chosen_embedding, inputs.rejected_embedding
    if params.normalize:
        v_w, v_l = F.normalize(v_w, dim=-1), F.normalize(v_l, dim=-1)
    if inputs.eigenvalues is not None and bool((inputs.eigenvalues < 0).any()):
        raise ConfigError("eigenvalue scales must be ≥ 0", field="eigenvalues")
    z = gpm_score(v_w, v_l, inputs.eigenvalues) / params.tau
    loss = weighted_mean(two_sided(neg_logsigmoid, z, soft_label(inputs, z.dtype)), inputs.weight)
    z = z.detach()
    metrics: Metrics = {
        "loss": loss.detach(),
        "preference/prob": torch.sigmoid(z).mean(),
        "preference/logit": z.mean(),
        "rewards/accuracies": (z > 0).to(z.dtype).mean(),
    }
    return loss, metrics
