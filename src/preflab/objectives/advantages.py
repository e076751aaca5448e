"""Advantage estimators, per-token KL estimators and KL controllers of policy-gradient RLHF.

Pure functions of tensors. Per-token tensors are ``(B, T)``, right-padded, with a boolean ``mask`` marking the
completion tokens of each sequence (a sequence's last real token is where its score lands). Sequence-level
tensors are ``(B,)``; ``group`` ``(B,)`` holds the prompt id of each sequence (G completions per prompt).

With ``weight`` (``(B,)``, the exact testbed's ρ(x)·π(y|x)) the group statistics are the population ones
(the G → ∞ limit of the sampled estimators): a leave-one-out or group mean becomes E_π[R | x], a group std
the standard deviation of R under π(·|x). Without weights they are the sample estimators of the papers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "gae",
    "group_mean_std",
    "grpo_advantages",
    "kl_estimate",
    "masked_whiten",
    "remax_advantages",
    "returns_to_go",
    "rloo_advantages",
    "token_rewards",
]

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, estimator: str = "k1") -> Tensor:
    """Per-token estimators of KL(π‖π_ref) from samples y_t ~ π (Schulman 2020, "Approximating KL divergence"),
    with δ = log π(y_t) − log π_ref(y_t): k1 = δ (unbiased, can be negative), k2 = δ²/2 (its on-policy gradient
    is the gradient of KL(π‖π_ref)), k3 = e^{−δ} − 1 + δ (unbiased, ≥ 0; GRPO's; differentiated on-policy its
    gradient is that of the *reverse* KL(π_ref‖π))."""
    delta = logprobs - ref_logprobs
    if estimator == "k1":
        return delta
    if estimator == "k2":
        return 0.5 * delta.square()
    if estimator == "k3":
        return torch.expm1(-delta) + delta
    raise ConfigError(f"unknown KL estimator '{estimator}' (known: {', '.join(KL_ESTIMATORS)})", field="kl_estimator")


def last_token(mask: Tensor) -> Tensor:
    """``(B,)`` index of each row's last masked token (rows with no token: 0)."""
    idx = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), idx, torch.zeros_like(idx)).max(dim=1).values


def token_rewards(score: Tensor, mask: Tensor, kl: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """``(B, T)`` per-token rewards r_t = −β·kl_t + score·1[t = last token] (Ziegler et al. 2019; Ouyang et al.
    2022): the sequence's score lands on its last completion token, the KL penalty on every token."""
    mask = mask.bool()
    rewards = torch.zeros(mask.shape, dtype=score.dtype, device=score.device)
    if kl is not None and beta:
        rewards = rewards - beta * kl.detach().to(score.dtype) * mask
    rows = torch.arange(mask.shape[0], device=mask.device)
    return rewards.index_put((rows, last_token(mask)), score + rewards[rows, last_token(mask)])


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016): δ_t = r_t + γ V_{t+1} − V_t (V = 0 after a
    sequence's last token), A_t = Σ_l (γλ)^l δ_{t+l}; returns ``(advantages, returns = A + V)``, zero off the
    mask."""
    mask = mask.to(rewards.dtype)
    values = values.detach() * mask
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        adv[:, t] = running
        next_value = values[:, t]
    return adv, (adv + values) * mask


def returns_to_go(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """G_t = Σ_{s ≥ t} γ^{s−t} r_s within each sequence (REINFORCE's return), zero off the mask."""
    return gae(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)[0]


def masked_whiten(
    values: Tensor, mask: Tensor, weight: Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8
) -> Tensor:
    """(values − mean) / std over every masked token of the batch (REINFORCE++'s global normalisation, PPO's
    advantage whitening); ``weight`` (B,) weights each sequence's tokens. std is the (weighted) population one."""
    m = mask.to(values.dtype)
    w = m if weight is None else m * weight.to(values.dtype)[:, None]
    total = w.sum().clamp_min(torch.finfo(values.dtype).tiny)
    mean = (values * w).sum() / total
    var = ((values - mean).square() * w).sum() / total
    out = (values - mean) / (var.sqrt() + eps) if shift_mean else values / (var.sqrt() + eps)
    return out * m


def group_mean_std(values: Tensor, group: Tensor, weight: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sequence (mean, std, count) of ``values`` over its group: with ``weight`` the weighted population
    statistics, else the sample mean and the unbiased sample std (N − 1; 0 for a singleton)."""
    ids = torch.unique(group, return_inverse=True)[1]
    n = int(ids.max()) + 1 if ids.numel() else 0
    w = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    zeros = torch.zeros(n, dtype=values.dtype, device=values.device)
    wsum = zeros.index_add(0, ids, w).clamp_min(torch.finfo(values.dtype).tiny)
    count = zeros.index_add(0, ids, torch.ones_like(values))
    mean = zeros.index_add(0, ids, w * values) / wsum
    sq = zeros.index_add(0, ids, w * (values - mean[ids]).square())
    if weight is None:
        var = sq / (count - 1).clamp_min(1)
    else:
        var = sq / wsum
    return mean[ids], var.sqrt()[ids], count[ids]


def _check_groups(count: Tensor, what: str) -> None:
    if bool((count < 2).any()):
        raise ConfigError(
            f"{what} needs at least 2 completions per prompt (a group of {int(count.min())}); raise rollout.group_size",
            field="rollout.group_size",
        )


def rloo_advantages(rewards: Tensor, group: Tensor, weight: Tensor | None = None) -> Tensor:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024): A_i = R_i − (1/(G−1)) Σ_{j≠i} R_j, the leave-one-out
    mean of the other samples of the same prompt as the baseline (unbiased). With ``weight``: R − E_π[R|x]."""
    mean, _, count = group_mean_std(rewards, group, weight)
    if weight is not None:
        return rewards - mean
    _check_groups(count, "RLOO's leave-one-out baseline")
    return (rewards - mean) * count / (count - 1)


def grpo_advantages(
    rewards: Tensor, group: Tensor, scale: bool = True, eps: float = 1e-4, weight: Tensor | None = None
) -> Tensor:
    """GRPO (Shao et al. 2024, eq. 3 of the outcome-supervision case): A_i = (R_i − mean_g R) / (std_g R + ε).
    ``scale=False`` is Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training"): A_i = R_i − mean_g R,
    without the std division that up-weights prompts whose rewards barely vary."""
    mean, std, count = group_mean_std(rewards, group, weight)
    if weight is None:
        _check_groups(count, "GRPO's group baseline")
    adv = rewards - mean
    return adv / (std + eps) if scale else adv


def remax_advantages(rewards: Tensor, greedy_rewards: Tensor) -> Tensor:
    """ReMax (Li et al. 2024): A = R(x, y) − R(x, ȳ), the reward of the greedy completion ȳ of the same prompt as
    the baseline."""
    if greedy_rewards.shape != rewards.shape:
        raise ConfigError("ReMax needs one greedy-rollout reward per sampled completion", field="baseline")
    return rewards - greedy_rewards


class FixedKLController:
    """A constant KL coefficient β."""

    def __init__(self, beta: float):
        self.value = float(beta)

    def update(self, kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", §2.2: after a batch with
    observed KL, e = clip(KL / target − 1, −0.2, 0.2) and β ← β·(1 + e·n_steps / horizon)."""

    value: float
    target: float
    horizon: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("value", "target", "horizon"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"must be > 0, got {getattr(self, name)!r}", field=f"kl_{name}")

    def update(self, kl: float, n_steps: int) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
