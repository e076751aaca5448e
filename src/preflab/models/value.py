"""PPO's critic: a value head V(x, y_≤t) on the policy's final hidden states (a shared trunk, as TRL's
``AutoModelForCausalLMWithValueHead`` and the InstructGPT-style PPO implementations that share weights do).

``scalar``: one linear output per token, trained by the clipped squared error. ``hl_gauss``: ``num_bins``
logits per token, a histogram over [v_min, v_max], trained by cross-entropy to the HL-Gauss target of the return
and read as the expectation of the bin centres (Farebrother et al. 2024, "Stop Regressing";
:mod:`preflab.objectives.hl_gauss`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..objectives.hl_gauss import hl_gauss_decode, hl_gauss_support

__all__ = ["ValueHead"]


class ValueHead(nn.Module):
    """``forward(hidden (…, H)) -> (…)`` values (scalar) or (…, bins) logits (hl_gauss); :meth:`decode` turns
    either into values. Initialised to predict 0 (zero weights, and for HL-Gauss a bias that puts the mass on
    the bins around 0)."""

    def __init__(
        self,
        hidden_size: int,
        value_head: str = "scalar",
        num_bins: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
    ):
        super().__init__()
        self.value_head = value_head  # "scalar" or "hl_gauss" (PolicyGradientParams.value_head)
        out = 1 if value_head == "scalar" else num_bins
        self.linear = nn.Linear(hidden_size, out)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.register_buffer("support", hl_gauss_support(v_min, v_max, num_bins), persistent=False)

    def forward(self, hidden: Tensor) -> Tensor:
        out = self.linear(hidden.to(self.linear.weight.dtype))
        return out.squeeze(-1) if self.value_head == "scalar" else out

    def decode(self, output: Tensor) -> Tensor:
        if self.value_head == "scalar":
            return output
        return hl_gauss_decode(output, self.support.to(output.dtype))

    @torch.no_grad()
    def values(self, hidden: Tensor) -> Tensor:
        return self.decode(self(hidden))
