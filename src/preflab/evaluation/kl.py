"""KL(π ‖ π_ref) estimated from samples of π, at the sequence level.

For y ∼ π(·|x) let ``log r = log π_ref(y|x) − log π(y|x)`` (sequence sums of token log-probs). Three
Monte-Carlo estimators of KL(π‖π_ref) = E_π[−log r] (Schulman 2020, "Approximating KL Divergence"):

- k1 = −log r: unbiased, high variance, can be negative on a sample;
- k2 = ½ (log r)²: biased, low variance (reported for reference);
- k3 = (r − 1) − log r: unbiased (E_π[r] = 1) and never negative; lower variance when π ≈ π_ref.

Each comes with its standard error ``sd / √n`` (cluster-robust when several samples share a prompt).
The samples must come from π itself (temperature 1, no top-p / top-k truncation), otherwise the estimate
is of a different distribution. With completion lengths, the per-token KL ``Σ k1 / Σ |y|`` is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import DataError
from .stats import as_float_array, weighted_mean_se


@dataclass
class KLEstimate:
    """Sequence-level KL(π‖π_ref) from n samples of π: k1 (with SE), k3 (with SE), k2."""

    kl: float  # k1 mean: the standard sequence-level estimate
    se: float
    k3: float
    k3_se: float
    k2: float
    n: int
    kl_per_token: float | None = None
    mean_length: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> KLEstimate:
        return cls(**data)

    def __str__(self) -> str:
        return f"KL {self.kl:.4f} ± {self.se:.4f} nats (k3 {self.k3:.4f} ± {self.k3_se:.4f}, n={self.n})"


def estimate_kl(
    logp_policy: Sequence[float] | np.ndarray,
    logp_ref: Sequence[float] | np.ndarray,
    *,
    lengths: Sequence[float] | np.ndarray | None = None,
    clusters: Sequence | None = None,
) -> KLEstimate:
    """Estimate KL(π‖π_ref) from ``log π(y_i)`` and ``log π_ref(y_i)`` of samples ``y_i ∼ π``."""
    lp = as_float_array(logp_policy, "logp_policy")
    lr = as_float_array(logp_ref, "logp_ref")
    if lp.size != lr.size:
        raise DataError(f"{lp.size} policy log-probs but {lr.size} reference log-probs", field="logp_ref")
    if lp.size == 0:
        raise DataError("KL estimate from zero samples")
    log_r = lr - lp
    k1 = -log_r
    with np.errstate(over="ignore"):
        k3 = np.expm1(log_r) - log_r  # (r - 1) - log r, exact near r = 1
    k2 = 0.5 * log_r**2
    kl, se = weighted_mean_se(k1, clusters=clusters)
    k3_mean, k3_se = (
        weighted_mean_se(k3, clusters=clusters) if np.all(np.isfinite(k3)) else (float("inf"), float("nan"))
    )
    per_token = mean_len = None
    if lengths is not None:
        lens = as_float_array(lengths, "length", 0.0)
        if lens.size != lp.size:
            raise DataError(f"{lens.size} lengths for {lp.size} samples", field="length")
        mean_len = float(lens.mean())
        per_token = float(k1.sum() / lens.sum()) if lens.sum() > 0 else None
    return KLEstimate(kl, se, float(k3_mean), k3_se, float(k2.mean()), int(lp.size), per_token, mean_len)


def exact_kl(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """Exact KL(softmax(p)‖softmax(q)) along the last axis (tables, testbed policies)."""
    lp = p_logits - np.logaddexp.reduce(p_logits, axis=-1, keepdims=True)
    lq = q_logits - np.logaddexp.reduce(q_logits, axis=-1, keepdims=True)
    return np.sum(np.exp(lp) * (lp - lq), axis=-1)
