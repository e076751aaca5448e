"""The shapes objectives consume, and the registry that names them.

An objective is a pure function ``fn(inputs, params) -> (loss, metrics)``: tensors in, a scalar loss
and a dict of float/tensor metrics out. No model, no tokenizer, no I/O. Because it is pure, the exact
testbed (log-probs from logit tables) and the LM trainer (sequence log-prob sums) call the same code.

Log-probs are *sequence sums* of token log-probs, shape ``(B,)``; lengths are completion token counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class PairInputs:
    """A batch of pairs (x, y_w, y_l). ``ref_*`` are None for reference-free objectives."""

    policy_chosen: Tensor
    policy_rejected: Tensor
    ref_chosen: Tensor | None = None
    ref_rejected: Tensor | None = None
    chosen_len: Tensor | None = None
    rejected_len: Tensor | None = None
    prob: Tensor | None = None  # soft label P(y_w ≻ y_l); None = hard label 1
    weight: Tensor | None = None  # per-example weight; None = 1
    chosen_winrate: Tensor | None = None  # P̂(y_w ≻ π_t | x), win rate against the current policy (SPPO)
    rejected_winrate: Tensor | None = None  # P̂(y_l ≻ π_t | x)


@dataclass
class UnpairedInputs:
    """A batch of single completions with binary labels (KTO). ``ref_kl``/``policy_kl`` hold log-probs of
    mismatched (x, y') completions used for the batch KL estimate z."""

    policy: Tensor
    ref: Tensor
    label: Tensor  # bool / {0,1}: desirable
    length: Tensor | None = None
    policy_kl: Tensor | None = None
    ref_kl: Tensor | None = None
    weight: Tensor | None = None


@dataclass
class DemonstrationInputs:
    """A batch of demonstrations to imitate (supervised fine-tuning): ``policy`` holds the sequence sums
    log π(y|x) of each completion, ``length`` its completion token counts |y|."""

    policy: Tensor  # (B,)
    length: Tensor  # (B,)
    weight: Tensor | None = None  # per-example weight; None = 1


@dataclass
class RankingInputs:
    """A batch of rankings: K responses per prompt, ``scores`` higher = better, ``mask`` False = padding."""

    policy: Tensor  # (B, K)
    ref: Tensor | None
    scores: Tensor  # (B, K)
    mask: Tensor | None = None
    length: Tensor | None = None
    weight: Tensor | None = None  # (B,) per-list weight; None = 1


@dataclass
class RewardPairInputs:
    """Scalar reward-model outputs for a batch of pairs (Bradley–Terry fitting)."""

    chosen_reward: Tensor  # (B,)
    rejected_reward: Tensor  # (B,)
    margin: Tensor | None = None  # required reward gap, e.g. from rating differences (Llama 2)
    prob: Tensor | None = None  # soft label P(y_w ≻ y_l)
    weight: Tensor | None = None


@dataclass
class PreferenceEmbeddingInputs:
    """Preference embeddings v_y ∈ R^{2k} of a batch of pairs (general preference models)."""

    chosen_embedding: Tensor  # (B, 2k)
    rejected_embedding: Tensor  # (B, 2k)
    eigenvalues: Tensor | None = None  # (B, k) or (k,), ≥ 0: scale λ_l of each 2×2 rotation block
    prob: Tensor | None = None
    weight: Tensor | None = None


@dataclass
class ScalarTargetInputs:
    """Histogram logits over fixed bins and the scalar targets they should represent (HL-Gauss)."""

    logits: Tensor  # (B, num_bins)
    target: Tensor  # (B,)
    weight: Tensor | None = None


Metrics = dict[str, Any]
ObjectiveFn = Callable[..., tuple[Tensor, Metrics]]


@dataclass
class ObjectiveSpec:
    """A registry entry: the function, its hyperparameter dataclass and the input kind it consumes."""

    name: str
    fn: ObjectiveFn
    params: type
    inputs: str  # its input kind: "pair" | "unpaired" | "ranking" | other input kinds added by their schedules
    needs_ref: bool = True
    doc: str = ""

    def make_params(self, **kwargs):
        return self.params(**kwargs)

    def __call__(self, inputs, params=None):
        return self.fn(inputs, params if params is not None else self.params())


REGISTRY: dict[str, ObjectiveSpec] = {}


def register(name: str, params: type, inputs: str = "pair", needs_ref: bool = True):
    """Decorator: ``@register("dpo", DPOParams)`` adds the function to :data:`REGISTRY`. How an objective is
    trained (its data and reference schedules) is the algorithm table's business (:mod:`preflab.algorithms`)."""

    def deco(fn: ObjectiveFn) -> ObjectiveFn:
        if name in REGISTRY:
            raise ValueError(f"objective '{name}' registered twice")
        REGISTRY[name] = ObjectiveSpec(name, fn, params, inputs, needs_ref, (fn.__doc__ or "").strip())
        return fn

    return deco


def get_objective(name: str) -> ObjectiveSpec:
    """Look an objective up by name; an unknown name is a ConfigError naming the closest one."""
    import difflib

    from ..errors import ConfigError

    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown objective '{name}'{hint} (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name]


def weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """Mean of per-example losses, weighted when weights are given."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(torch.finfo(values.dtype).tiny)
