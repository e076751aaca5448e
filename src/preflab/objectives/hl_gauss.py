"""HL-Gauss: regress a scalar (a reward, a value) by classification over a fixed histogram."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import check_positive, weighted_mean
from .base import Metrics, ScalarTargetInputs, register

__all__ = ["hl_gauss", "hl_gauss_decode", "hl_gauss_support", "hl_gauss_target"]


def hl_gauss_support(v_min: float, v_max: float, num_bins: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Bin edges z_0 < … < z_n (``num_bins + 1`` values) of ``num_bins`` equal bins covering [v_min, v_max]."""
    return torch.linspace(v_min, v_max, num_bins + 1, dtype=dtype)


def hl_gauss_target(values: Tensor, support: Tensor, sigma: float) -> Tensor:
    """The HL-Gauss target histogram (…, n): the mass of N(y, σ²) in each bin, renormalised to the support,
        p_i = [Φ((z_{i+1} − y)/σ) − Φ((z_i − y)/σ)] / [Φ((z_n − y)/σ) − Φ((z_0 − y)/σ)].
    ``values`` are clipped to [z_0, z_n] first so that the normaliser stays ≥ ½."""
    support = support.to(values.dtype if values.is_floating_point() else torch.float32)
    y = values.to(support.dtype).clamp(support[0], support[-1]).unsqueeze(-1)
    cdf = torch.special.ndtr((support - y) / sigma)
    return (cdf[..., 1:] - cdf[..., :-1]) / (cdf[..., -1:] - cdf[..., :1])


def hl_gauss_decode(logits: Tensor, support: Tensor) -> Tensor:
    """The predicted scalar: the expectation of the bin centres under softmax(logits)."""
    centres = (support[1:] + support[:-1]) / 2
    return (torch.softmax(logits, dim=-1) * centres.to(logits.dtype)).sum(-1)


@dataclass
class HLGaussParams:
    """v_min / v_max: range the histogram covers. num_bins: bins (the logits' last dimension).
    sigma_ratio: σ / bin width (the paper recommends 0.75)."""

    v_min: float = -10.0
    v_max: float = 10.0
    num_bins: int = 101
    sigma_ratio: float = 0.75

    def __post_init__(self) -> None:
        if not (math.isfinite(self.v_min) and math.isfinite(self.v_max) and self.v_min < self.v_max):
            raise ConfigError(f"need finite v_min < v_max, got {self.v_min} and {self.v_max}", field="v_max")
        if self.num_bins < 2:
            raise ConfigError(f"need at least 2 bins, got {self.num_bins}", field="num_bins")
        check_positive("sigma_ratio", self.sigma_ratio)

    @property
    def sigma(self) -> float:
        return self.sigma_ratio * (self.v_max - self.v_min) / self.num_bins


@register("hl_gauss", HLGaussParams, inputs="scalar_target", needs_ref=False)
def hl_gauss(inputs: ScalarTargetInputs, params: HLGaussParams) -> tuple[Tensor, Metrics]:
    """HL-Gauss — Farebrother et al. 2024, "Stop Regressing: Training Value Functions via Classification for
    Scalable Deep RL" (Imani & White 2018 for the histogram loss): ℓ = −Σ_i p_i(y) log softmax(logits)_i with
    the Gaussian-smoothed target p(y) of :func:`hl_gauss_target` (σ = ``sigma_ratio`` × bin width); the
    prediction is Σ_i softmax_i · centre_i (:func:`hl_gauss_decode`). Targets outside [v_min, v_max] are
    clipped; ``value/clipped`` reports their fraction."""
    if inputs.logits.shape[-1] != params.num_bins:
        raise ConfigError(f"logits have {inputs.logits.shape[-1]} bins, params say {params.num_bins}", field="num_bins")
    support = hl_gauss_support(params.v_min, params.v_max, params.num_bins, inputs.logits.dtype)
    support = support.to(inputs.logits.device)
    target = inputs.target.to(inputs.logits.dtype)
    if not bool(torch.isfinite(target).all()):
        raise ConfigError("HL-Gauss targets must be finite", field="target")
    probs = hl_gauss_target(target, support, params.sigma)
    per_example = -(probs * torch.log_softmax(inputs.logits, dim=-1)).sum(-1)
    loss = weighted_mean(per_example, inputs.weight)
    with torch.no_grad():
        pred = hl_gauss_decode(inputs.logits, support)
        clipped = ((target < params.v_min) | (target > params.v_max)).to(pred.dtype)
    metrics: Metrics = {
        "loss": loss.detach(),
        "value/mean": pred.mean(),
        "value/mae": (pred - target).abs().mean(),
        "value/clipped": clipped.mean(),
    }
    return loss, metrics
