"""Online direct alignment: DPO on freshly sampled, freshly judged pairs (online DPO) and its exploratory
variant XPO. The objectives are DPO's loss; what makes them online is the data schedule (pairs drawn from
the current policy — and, for XPO, from π_ref — and judged now)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ._common import check_positive, require, weighted_mean
from .base import Metrics, PairInputs, register
from .game_inputs import XPOInputs
from .pairwise import DPOParams, dpo

OnlineDPOParams = DPOParams


@register("online_dpo", OnlineDPOParams, inputs="pair")
def online_dpo(inputs: PairInputs, params: DPOParams) -> tuple[Tensor, Metrics]:
    """Online DPO — Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback" (OAIF): at every
    step sample two responses from the current policy, let a judge (an LLM or preference model) pick the
    preferred one, and take a DPO step on that pair: ℓ = −log σ(β m), m = h(y_w) − h(y_l). Under a
    Bradley–Terry judge its fixed point is the KL-regularised optimum π_ref exp(r/β)/Z whatever the sampling
    policy (as long as it has full support)."""
    return dpo(inputs, params)


@dataclass
class XPOParams:
    """beta: KL strength β of the DPO term. alpha: weight α of the exploration term α·log π(ỹ), ỹ ∼ π_ref."""

    beta: float = 0.1
    alpha: float = 1e-5

    def __post_init__(self) -> None:
        check_positive("beta", self.beta)
        check_positive("alpha", self.alpha, allow_zero=True)


@register("xpo", XPOParams, inputs="xpo_pair")
def xpo(inputs: XPOInputs, params: XPOParams) -> tuple[Tensor, Metrics]:
    """XPO — Xie et al. 2024, "Exploratory Preference Optimization: Harnessing Implicit Q*-Approximation for
    Sample-Efficient RLHF", Algorithm 1 (and TRL's ``XPOTrainer``): online DPO on a judged pair (one response
    from π, one from π_ref) plus the optimism bonus α·log π(ỹ|x) on responses ỹ ∼ π_ref
    (``policy_explore``; TRL reuses the π_ref response of the pair). Minimising α·log π(ỹ) pushes mass off
    what π_ref already covers; at α → 0 XPO is online DPO, and the testbed fixed point moves from the
    KL-regularised optimum by O(α)."""
    explore = require(inputs, "policy_explore", "xpo")
    dpo_loss, metrics = dpo(inputs, DPOParams(beta=params.beta))
    bonus = weighted_mean(explore, inputs.explore_weight)
    loss = dpo_loss + params.alpha * bonus
    metrics = dict(metrics)
    metrics.update({"loss": loss.detach(), "loss/dpo": dpo_loss.detach(), "loss/xpo": (params.alpha * bonus).detach()})
    return loss, metrics
