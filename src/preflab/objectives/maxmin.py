"""MaxMin-RLHF (Chakraborty et al. 2024, "MaxMin-RLHF: Alignment with Diverse Human Preferences"): one reward
cannot represent a population whose groups disagree, so (1) learn a mixture of K Bradley–Terry reward models
by expectation–maximisation over annotators (``maxmin_em``), then (2) optimise the policy for the worst-off
group, max_π min_k E_π[r_k] − β KL(π‖π_ref) (``maxmin``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, weighted_mean
from .base import Metrics, register
from .game_inputs import GroupPairInputs, GroupRewardInputs, baselined


@dataclass
class MaxMinEMParams:
    """hard: assign each annotator to its most likely group (the paper's Algorithm 2) instead of soft
    responsibilities (classical EM). margin: optional Bradley–Terry margin added to every comparison."""

    hard: bool = False
    margin: float = 0.0


def responsibilities(inputs: GroupPairInputs, hard: bool = False, margin: float = 0.0) -> tuple[Tensor, Tensor]:
    """E-step: (A, G) posterior group memberships of the A annotators, γ_{a,k} ∝ prior_k Π_{i∈a}
    σ(r_k(y_w,i) − r_k(y_l,i) − margin)^{w_i}, and the (A,) marginal log-likelihood of each annotator."""
    if inputs.reward_chosen.shape != inputs.reward_rejected.shape or inputs.reward_chosen.ndim != 2:
        raise ConfigError("reward_chosen and reward_rejected must both be (B, G)", field="reward_chosen")
    diff = (inputs.reward_chosen - inputs.reward_rejected - margin).detach()
    G = diff.shape[1]
    loglik = F.logsigmoid(diff)  # (B, G)
    if inputs.weight is not None:
        loglik = loglik * inputs.weight.to(loglik.dtype)[:, None]
    ids = torch.unique(inputs.annotator, return_inverse=True)[1]
    A = int(ids.max()) + 1 if ids.numel() else 0
    per_annotator = torch.zeros(A, G, dtype=diff.dtype, device=diff.device).index_add_(0, ids, loglik)
    prior = torch.full((G,), 1.0 / G, dtype=diff.dtype) if inputs.prior is None else inputs.prior.to(diff.dtype)
    joint = per_annotator + torch.log(prior.clamp_min(torch.finfo(diff.dtype).tiny))[None, :]
    marginal = torch.logsumexp(joint, dim=1)
    gamma = torch.softmax(joint, dim=1)
    if hard:
        gamma = F.one_hot(gamma.argmax(1), G).to(diff.dtype)
    return gamma, marginal


@register("maxmin_em", MaxMinEMParams, inputs="group_pairs", needs_ref=False)
def maxmin_em(inputs: GroupPairInputs, params: MaxMinEMParams) -> tuple[Tensor, Metrics]:
    """MaxMin-RLHF's reward learning (Chakraborty et al. 2024, §4, Algorithm 2): a mixture of G Bradley–Terry
    reward models over annotators. E-step (detached): responsibilities γ_{a,k} of each annotator's group
    from the likelihood of all their labels. M-step: the responsibility-weighted Bradley–Terry loss
    ℓ = −Σ_i w_i Σ_k γ_{a(i),k} log σ(r_k(y_w) − r_k(y_l)) / Σ_i w_i, whose minimisation (one or more
    gradient steps per E-step: generalised EM) refits every group's reward; pass a fixed E-step as
    ``responsibilities`` to keep it constant during the M-step (classical EM). The new group prior is
    ``metrics["prior"]`` = mean responsibility; ``metrics["responsibilities"]`` is (A, G) in the order of
    ``torch.unique(annotator)``."""
    gamma, marginal = responsibilities(inputs, params.hard, params.margin)
    if inputs.responsibilities is not None:
        if inputs.responsibilities.shape != gamma.shape:
            raise ConfigError(f"expected shape {tuple(gamma.shape)}", field="responsibilities")
        gamma = inputs.responsibilities.to(gamma.dtype)
    ids = torch.unique(inputs.annotator, return_inverse=True)[1]
    diff = inputs.reward_chosen - inputs.reward_rejected - params.margin
    per_example = -(gamma[ids] * F.logsigmoid(diff)).sum(1)
    loss = weighted_mean(per_example, inputs.weight)
    return loss, {
        "loss": loss.detach(),
        "log_likelihood": marginal.sum().detach(),
        "responsibilities": gamma,
        "prior": gamma.mean(0),
        "accuracy": weighted_mean(((gamma[ids] * diff.detach()).sum(1) > 0).to(diff.dtype), inputs.weight),
    }


@dataclass
class MaxMinParams:
    """beta: β, the KL(π‖π_ref) regularisation of the egalitarian objective."""

    beta: float = 0.1

    def __post_init__(self) -> None:
        check_positive("beta", self.beta, allow_zero=True)


@register("maxmin", MaxMinParams, inputs="group_samples")
def maxmin(inputs: GroupRewardInputs, params: MaxMinParams) -> tuple[Tensor, Metrics]:
    """MaxMin-RLHF's policy step (Chakraborty et al. 2024, eq. 9 and Algorithm 1): maximise the egalitarian
    objective min_k E_π[r_k] − β KL(π‖π_ref). Its (super)gradient is the policy gradient of
    E_π[Σ_k λ_k r_k − β (log π − log π_ref)] with λ on the worst-off groups. ``group_weights`` λ come from
    the schedule (a dual variable, e.g. multiplicative weights on the group values: the DRO view of §4);
    without them λ is one-hot on the group with the lowest weighted mean reward in this batch (Algorithm 1).
    With exact expectations and the dual schedule the iterates converge to
    :func:`preflab.testbeds.solvers.maxmin_policy`."""
    rewards = inputs.rewards.detach()
    if rewards.ndim != 2 or rewards.shape[0] != inputs.policy.shape[0]:
        raise ConfigError(f"rewards must be (B, G) with B = {inputs.policy.shape[0]}", field="rewards")
    values = torch.stack([weighted_mean(rewards[:, k], inputs.weight) for k in range(rewards.shape[1])])
    if inputs.group_weights is None:
        lam = F.one_hot(values.argmin(), rewards.shape[1]).to(rewards.dtype)
    else:
        lam = inputs.group_weights.to(rewards.dtype)
        if lam.shape != values.shape or bool((lam < 0).any()) or not torch.isclose(lam.sum(), lam.new_tensor(1.0)):
            raise ConfigError("group weights must be a probability vector over the G groups", field="group_weights")
    advantage = rewards @ lam
    if params.beta > 0:
        if inputs.ref is None:
            raise ConfigError("objective 'maxmin' with beta > 0 needs this input but it is None", field="ref")
        advantage = advantage - params.beta * (inputs.policy - inputs.ref).detach()
    adv = baselined(advantage, inputs.weight, inputs.group)
    loss = -weighted_mean(adv * inputs.policy, inputs.weight)
    metrics: Metrics = {
        "loss": loss.detach(),
        "group_values": values,
        "min_value": values.min(),
        "group_weights": lam,
    }
    if inputs.ref is not None:
        metrics["kl"] = weighted_mean((inputs.policy - inputs.ref).detach(), inputs.weight)
    return loss, metrics
