"""Policy-gradient RLHF: PPO, RLOO, REINFORCE++, ReMax and GRPO as one clipped surrogate over per-token inputs.

A rollout (G completions per prompt from π_old, scored by a judge) becomes advantages once, by the algorithm's
estimator (:func:`estimate_advantages`, pure functions in :mod:`.advantages`); then several epochs of
minibatches minimise the registered objective, which is the same clipped surrogate for every algorithm:

    ℓ = agg_t[ −min(ρ_t A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_t) ] + β·agg_t[k_t]   (KL in the loss)
        + c_v · agg_t[ max((V_t − R_t)², (V_old,t + clip(V_t − V_old,t, ±ε_v) − R_t)²) / 2 ]   (PPO's critic)

with ρ_t = π(y_t)/π_old(y_t). Where the KL goes is a parameter: in the reward (r_t −= β·k1_t, then it flows
through the estimator: PPO, RLOO, REINFORCE++, ReMax) or in the loss (GRPO's k3). ``agg`` is the mean over all
tokens (``token_mean``), the mean over sequences of their token means (``sequence_mean``, GRPO's 1/|o_i|), or
the sum over tokens divided by B·L (``constant``, Dr. GRPO; L = ``max_length``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, check_range
from .advantages import (
    KL_ESTIMATORS,
    gae,
    grpo_advantages,
    kl_estimate,
    masked_whiten,
    remax_advantages,
    returns_to_go,
    rloo_advantages,
    token_rewards,
)
from .base import Metrics, register
from .hl_gauss import hl_gauss_decode, hl_gauss_support, hl_gauss_target

__all__ = [
    "PG_OBJECTIVES",
    "PolicyGradientParams",
    "RolloutInputs",
    "RolloutScores",
    "clipped_value_loss",
    "estimate_advantages",
    "ppo_policy_loss",
    "sequence_rewards",
]

PG_OBJECTIVES = ("ppo", "rloo", "reinforce_pp", "remax", "grpo")
AGGREGATIONS = ("token_mean", "sequence_mean", "constant")


@dataclass
class RolloutInputs:
    """One minibatch of a rollout, per token (B, T), right-padded; ``mask`` marks completion tokens.

    logprobs: log π_θ(y_t | x, y_<t) with gradient. old_logprobs: the same under π_old, the policy that sampled
    (no gradient). advantages: from :func:`estimate_advantages`. ref_logprobs: log π_ref (KL in the loss).
    values / value_logits: the critic's scalar (B, T) or HL-Gauss logits (B, T, bins), with gradient (PPO);
    old_values and returns: its targets. weight: (B,) per-sequence weight (the exact testbed's ρ·π_old)."""

    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor
    ref_logprobs: Tensor | None = None
    values: Tensor | None = None
    value_logits: Tensor | None = None
    old_values: Tensor | None = None
    returns: Tensor | None = None
    weight: Tensor | None = None


@dataclass
class RolloutScores:
    """What a whole rollout batch holds before its advantages exist: score (B,) from the judge, group (B,)
    prompt ids, mask / old_logprobs / ref_logprobs (B, T), values (B, T) of the critic at sampling time (PPO),
    baseline_score (B,): the total reward of the prompt's greedy completion (ReMax), weight (B,) (testbed)."""

    score: Tensor
    group: Tensor
    mask: Tensor
    old_logprobs: Tensor
    ref_logprobs: Tensor | None = None
    values: Tensor | None = None
    baseline_score: Tensor | None = None
    weight: Tensor | None = None


@dataclass
class PolicyGradientParams:
    """beta: KL coefficient β (0 = no KL). kl_estimator: k1 | k2 | k3 (:func:`.advantages.kl_estimate`).
    kl_in_reward: subtract β·k per token from the reward (True) or add β·k to the loss (False).
    kl_target: adaptive KL controller's target (Ziegler et al. 2019; None = fixed β). kl_horizon: its horizon.
    clip_eps / clip_eps_high: the ratio clip range [1 − ε, 1 + ε_high] (ε_high None = ε; DAPO's clip-higher).
    loss_agg: token_mean | sequence_mean | constant. max_length: L of the constant aggregation.
    whiten: normalise advantages over the batch (mean 0, std 1). scale_rewards: GRPO's division by the group std.
    gamma / lam: discount and GAE λ. vf_coef: critic loss weight. value_clip: ε_v. value_head: scalar | hl_gauss.
    v_min / v_max / num_bins / sigma_ratio: the HL-Gauss critic's histogram (Farebrother et al. 2024)."""

    beta: float = 0.05
    kl_estimator: str = "k1"
    kl_in_reward: bool = True
    kl_target: float | None = None
    kl_horizon: float = 10000.0
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    loss_agg: str = "token_mean"
    max_length: int = 256
    whiten: bool = False
    scale_rewards: bool = True
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    value_clip: float = 0.2
    value_head: str = "scalar"
    v_min: float = -10.0
    v_max: float = 10.0
    num_bins: int = 51
    sigma_ratio: float = 0.75

    def __post_init__(self) -> None:
        check_positive("beta", self.beta, allow_zero=True)
        check_positive("clip_eps", self.clip_eps)
        if self.clip_eps_high is not None:
            check_positive("clip_eps_high", self.clip_eps_high)
        if self.kl_target is not None:
            check_positive("kl_target", self.kl_target)
        check_positive("kl_horizon", self.kl_horizon)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("lam", self.lam, 0.0, 1.0)
        check_positive("vf_coef", self.vf_coef, allow_zero=True)
        check_positive("value_clip", self.value_clip)
        for name, value, known in (
            ("kl_estimator", self.kl_estimator, KL_ESTIMATORS),
            ("loss_agg", self.loss_agg, AGGREGATIONS),
            ("value_head", self.value_head, ("scalar", "hl_gauss")),
        ):
            if value not in known:
                raise ConfigError(f"unknown {name} '{value}' (known: {', '.join(known)})", field=name)
        if self.max_length < 1 or self.num_bins < 2 or not self.v_min < self.v_max:
            raise ConfigError("need max_length ≥ 1, num_bins ≥ 2 and v_min < v_max", field="max_length")


@dataclass
class PPOParams(PolicyGradientParams):
    """PPO (as in Ouyang et al. 2022 / TRL's PPOTrainer): k1 KL in the reward, GAE, whitened advantages."""

    whiten: bool = True


@dataclass
class RLOOParams(PolicyGradientParams):
    """RLOO: k1 KL in the sequence reward, leave-one-out baseline."""


@dataclass
class ReinforcePPParams(PolicyGradientParams):
    """REINFORCE++: k1 KL in the token rewards, returns-to-go, global batch whitening."""

    beta: float = 0.01
    whiten: bool = True


@dataclass
class ReMaxParams(PolicyGradientParams):
    """ReMax: k1 KL in the sequence reward, greedy-rollout baseline."""


@dataclass
class GRPOParams(PolicyGradientParams):
    """GRPO: k3 KL in the loss, group-normalised advantages, per-sequence token means."""

    beta: float = 0.04
    kl_estimator: str = "k3"
    kl_in_reward: bool = False
    loss_agg: str = "sequence_mean"


PARAMS: dict[str, type[PolicyGradientParams]] = {
    "ppo": PPOParams,
    "rloo": RLOOParams,
    "reinforce_pp": ReinforcePPParams,
    "remax": ReMaxParams,
    "grpo": GRPOParams,
}


# ---------------------------------------------------------------------------------------------- the losses
def aggregate(values: Tensor, mask: Tensor, how: str, weight: Tensor | None = None, max_length: int = 1) -> Tensor:
    """Reduce per-token ``values`` (B, T) to a scalar (module docstring); ``weight`` (B,) weights sequences."""
    m = mask.to(values.dtype)
    w = (
        torch.ones(values.shape[0], dtype=values.dtype, device=values.device)
        if weight is None
        else weight.to(values.dtype)
    )
    tiny = torch.finfo(values.dtype).tiny
    if how == "token_mean":
        return (values * m * w[:, None]).sum() / (m * w[:, None]).sum().clamp_min(tiny)
    per_seq = (values * m).sum(1)
    if how == "sequence_mean":
        per_seq = per_seq / m.sum(1).clamp_min(1.0)
    else:  # constant: Dr. GRPO's Σ_t / L
        per_seq = per_seq / max_length
    return (per_seq * w).sum() / w.sum().clamp_min(tiny)


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, clip_low: float, clip_high: float
) -> tuple[Tensor, Tensor]:
    """Per-token clipped surrogate (Schulman et al. 2017, eq. 7): −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)A),
    ρ = exp(log π − log π_old); returns ``(loss (B, T), clipped (B, T) bool)`` — clipped where the clipped term
    is the smaller one, i.e. the token's gradient is zero (ρ > 1 + ε_high with A > 0, ρ < 1 − ε_low with A < 0)."""
    ratio = torch.exp(logprobs - old_logprobs.detach())
    adv = advantages.detach()
    unclipped = ratio * adv
    clipped_term = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv
    return -torch.minimum(unclipped, clipped_term), clipped_term < unclipped


def clipped_value_loss(values: Tensor, old_values: Tensor, returns: Tensor, clip: float) -> Tensor:
    """Per-token PPO value loss ½·max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²) (as in OpenAI's baselines
    and TRL)."""
    old = old_values.detach()
    target = returns.detach()
    v_clipped = old + torch.clamp(values - old, -clip, clip)
    return 0.5 * torch.maximum((values - target).square(), (v_clipped - target).square())


def hl_gauss_value_loss(value_logits: Tensor, returns: Tensor, params: PolicyGradientParams) -> tuple[Tensor, Tensor]:
    """Per-token HL-Gauss critic loss (cross-entropy to the Gaussian-smoothed histogram of the return) and the
    decoded value; no clipping."""
    support = hl_gauss_support(params.v_min, params.v_max, params.num_bins, value_logits.dtype).to(value_logits.device)
    sigma = params.sigma_ratio * (params.v_max - params.v_min) / params.num_bins
    target = hl_gauss_target(returns.detach(), support, sigma)
    loss = -(target * torch.log_softmax(value_logits, dim=-1)).sum(-1)
    return loss, hl_gauss_decode(value_logits, support)


def _surrogate(inputs: RolloutInputs, params: PolicyGradientParams, name: str) -> tuple[Tensor, Metrics]:
    mask, w, agg = inputs.mask.bool(), inputs.weight, params.loss_agg
    high = params.clip_eps if params.clip_eps_high is None else params.clip_eps_high
    per_token, clipped = ppo_policy_loss(inputs.logprobs, inputs.old_logprobs, inputs.advantages, params.clip_eps, high)
    policy_loss = aggregate(per_token, mask, agg, w, params.max_length)
    loss = policy_loss
    metrics: Metrics = {"loss/policy": policy_loss.detach()}
    with torch.no_grad():
        metrics["clip_fraction"] = aggregate(clipped.to(per_token.dtype), mask, "token_mean", w)
        log_ratio = (inputs.logprobs - inputs.old_logprobs).detach()
        metrics["approx_kl_old"] = aggregate(0.5 * log_ratio.square(), mask, "token_mean", w)  # KL(π_old‖π)
        metrics["ratio"] = aggregate(log_ratio.exp(), mask, "token_mean", w)
    if inputs.ref_logprobs is not None:
        kl_tok = kl_estimate(inputs.logprobs, inputs.ref_logprobs.detach(), params.kl_estimator)
        kl = aggregate(kl_tok, mask, agg, w, params.max_length)
        if not params.kl_in_reward and params.beta > 0:
            loss = loss + params.beta * kl
        metrics["kl"] = aggregate(kl_tok.detach(), mask, "token_mean", w)
        # the sequence-level KL (k1 summed over a completion, mean over completions): the x-axis of the
        # over-optimisation curve, comparable with best-of-n's log n − (n−1)/n and the online schedules' `kl`
        k1 = (inputs.logprobs - inputs.ref_logprobs).detach()
        metrics["kl/sequence"] = aggregate(k1, mask, "constant", w, 1)
    if name == "ppo" and params.vf_coef > 0:
        if inputs.returns is None or (inputs.values is None and inputs.value_logits is None):
            raise ConfigError("PPO needs the critic's values and the returns", field="values")
        if params.value_head == "hl_gauss":
            if inputs.value_logits is None:
                raise ConfigError("value_head: hl_gauss needs the critic's histogram logits", field="value_head")
            v_tok, pred = hl_gauss_value_loss(inputs.value_logits, inputs.returns, params)
        else:
            if inputs.values is None or inputs.old_values is None:
                raise ConfigError("value_head: scalar needs the critic's values and old values", field="value_head")
            v_tok, pred = (
                clipped_value_loss(inputs.values, inputs.old_values, inputs.returns, params.value_clip),
                inputs.values,
            )
        value_loss = aggregate(v_tok, mask, "token_mean", w)
        loss = loss + params.vf_coef * value_loss
        metrics["loss/value"] = value_loss.detach()
        metrics["value/mean"] = aggregate(pred.detach(), mask, "token_mean", w)
    metrics["loss"] = loss.detach()
    return loss, metrics


@register("ppo", PPOParams, inputs="rollout")
def ppo(inputs: RolloutInputs, params: PPOParams) -> tuple[Tensor, Metrics]:
    """PPO for RLHF — Schulman et al. 2017 (clipped surrogate); Ziegler et al. 2019 and Ouyang et al. 2022 (the
    per-token KL penalty in the reward, a learned critic): advantages by GAE over r_t = −β·k1_t + score·1[t = T],
    whitened; the loss is the clipped surrogate plus c_v times the clipped value loss (scalar critic) or the
    HL-Gauss cross-entropy (categorical critic, Farebrother et al. 2024)."""
    return _surrogate(inputs, params, "ppo")


@register("rloo", RLOOParams, inputs="rollout")
def rloo(inputs: RolloutInputs, params: RLOOParams) -> tuple[Tensor, Metrics]:
    """RLOO — Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
    Human Feedback in LLMs" (Kool et al. 2019's leave-one-out baseline): R_i = score_i − β Σ_t k1_t,
    A_i = R_i − mean_{j≠i} R_j over the prompt's G samples, the same A on every token; clipped surrogate."""
    return _surrogate(inputs, params, "rloo")


@register("reinforce_pp", ReinforcePPParams, inputs="rollout")
def reinforce_pp(inputs: RolloutInputs, params: ReinforcePPParams) -> tuple[Tensor, Metrics]:
    """REINFORCE++ — Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models":
    per-token rewards r_t = −β·k1_t + score·1[t = T], returns-to-go, normalised over the whole batch (global
    mean and std, no critic, no per-prompt baseline); clipped surrogate."""
    return _surrogate(inputs, params, "reinforce_pp")


@register("remax", ReMaxParams, inputs="rollout")
def remax(inputs: RolloutInputs, params: ReMaxParams) -> tuple[Tensor, Metrics]:
    """ReMax — Li et al. 2024, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
    Aligning Large Language Models": A = R(x, y) − R(x, ȳ), ȳ the greedy completion of x, on every token."""
    return _surrogate(inputs, params, "remax")


@register("grpo", GRPOParams, inputs="rollout")
def grpo(inputs: RolloutInputs, params: GRPOParams) -> tuple[Tensor, Metrics]:
    """GRPO — Shao et al. 2024, "DeepSeekMath", eq. 3: A_i = (R_i − mean_g R)/std_g R on every token of sample i,
    the clipped surrogate averaged per sequence (1/|o_i|), plus β·k3 in the loss. ``scale_rewards=False`` and
    ``loss_agg: constant`` give Dr. GRPO (Liu et al. 2025)."""
    return _surrogate(inputs, params, "grpo")


# ---------------------------------------------------------------------------------------------- advantages
def sequence_rewards(
    score: Tensor,
    mask: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Tensor | None,
    params: PolicyGradientParams,
    beta: float | None = None,
) -> Tensor:
    """R = score − β Σ_t k_t when the KL is in the reward (else the score)."""
    beta = params.beta if beta is None else beta
    if not params.kl_in_reward or ref_logprobs is None or beta == 0:
        return score
    kl = kl_estimate(old_logprobs, ref_logprobs, params.kl_estimator) * mask
    return score - beta * kl.sum(1)


def estimate_advantages(
    name: str, rollout: RolloutScores, params: PolicyGradientParams, beta: float | None = None
) -> tuple[Tensor, Tensor | None]:
    """``(advantages (B, T), returns (B, T) or None)`` of algorithm ``name`` for a whole rollout batch, with the
    KL coefficient ``beta`` (default ``params.beta``; an adaptive controller passes its current value)."""
    beta = params.beta if beta is None else beta
    mask = rollout.mask.bool()
    m = mask.to(rollout.score.dtype)
    w = rollout.weight
    returns = None
    if name in ("ppo", "reinforce_pp"):
        kl = None
        if params.kl_in_reward and rollout.ref_logprobs is not None:
            kl = kl_estimate(rollout.old_logprobs, rollout.ref_logprobs, params.kl_estimator)
        rewards = token_rewards(rollout.score, mask, kl, beta)
        if name == "ppo":
            if rollout.values is None:
                raise ConfigError("PPO needs the critic's values of the rollout", field="values")
            adv, returns = gae(rewards, rollout.values, mask, params.gamma, params.lam)
        else:
            adv = returns_to_go(rewards, mask, params.gamma)
    else:
        total = sequence_rewards(rollout.score, mask, rollout.old_logprobs, rollout.ref_logprobs, params, beta)
        if name == "rloo":
            seq = rloo_advantages(total, rollout.group, w)
        elif name == "grpo":
            seq = grpo_advantages(total, rollout.group, params.scale_rewards, weight=w)
        elif name == "remax":
            if rollout.baseline_score is None:
                raise ConfigError("ReMax needs the greedy completions' rewards", field="baseline")
            seq = remax_advantages(total, rollout.baseline_score)
        else:
            raise ConfigError(
                f"'{name}' is not a policy-gradient algorithm (known: {', '.join(PG_OBJECTIVES)})", field="algorithm"
            )
        adv = seq[:, None] * m
    if params.whiten:
        adv = masked_whiten(adv, mask, w)
    return adv * m, returns
