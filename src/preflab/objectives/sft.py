"""Supervised fine-tuning: the negative log-likelihood of demonstrated completions (no reference policy)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import DemonstrationInputs, Metrics, register, weighted_mean


@dataclass
class SFTParams:
    """per_sequence: average each completion's token NLL first, then the sequences (favours short completions);
    false: one mean over every completion token of the batch, as TRL's SFTTrainer."""

    per_sequence: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.per_sequence, bool):
            raise ConfigError(f"must be true or false, got {self.per_sequence!r}", field="per_sequence")


@register("sft", SFTParams, inputs="demonstration", needs_ref=False)
def sft(inputs: DemonstrationInputs, params: SFTParams) -> tuple[Tensor, Metrics]:
    """Supervised fine-tuning (maximum likelihood on demonstrations; the first stage of Ouyang et al. 2022,
    InstructGPT; by behaviour cloning of a learning algorithm's trajectories, algorithm distillation, Laskin
    et al. 2022). With s_i = log π(y_i|x_i) the summed completion-token log-probs and |y_i| their counts:

        token mean (default, TRL's SFTTrainer):  ℓ = −Σ_i w_i s_i / Σ_i w_i |y_i|
        per_sequence:                            ℓ = Σ_i w_i (−s_i/|y_i|) / Σ_i w_i

    Prompt tokens carry no loss (TRL's ``completion_only_loss``). Over a whole dataset drawn from a data policy
    μ the token mean is minimised by π = μ (maximum likelihood: its normaliser does not depend on π); the
    per-sequence mean weights each demonstration by 1/|y| and is minimised by π ∝ μ/|y| (μ when the completions
    are equally long). Metrics: ``loss``, ``logps`` (mean s_i), ``num_tokens``
    (completion tokens in the batch)."""
    length = inputs.length.to(inputs.policy.dtype)
    if bool((length <= 0).any()):
        raise ConfigError("every demonstration needs at least one completion token", field="length")
    if params.per_sequence:
        loss = weighted_mean(-inputs.policy / length, inputs.weight)
    else:
        w = torch.ones_like(length) if inputs.weight is None else inputs.weight.to(length.dtype)
        loss = -(w * inputs.policy).sum() / (w * length).sum().clamp_min(torch.finfo(length.dtype).tiny)
    metrics: Metrics = {
        "loss": loss.detach(),
        "logps": inputs.policy.detach().mean(),
        "num_tokens": length.sum().detach(),
    }
    return loss, metrics
