"""Reward-model heads: what the classifier's logits at the last token mean, one class + one registration each.

Every reward model preflab trains is a Hugging Face sequence-classification model (a backbone and a linear
``score`` head, ``num_labels`` outputs, read at the last non-pad token); the *head* says how those outputs are
read, and is recorded in the saved ``config.json`` (``preflab_reward.head``) so a judge reads them the same way:

=========  ===========  ==========================================================================================
name       num_labels   output of :class:`~preflab.models.reward.RewardScorer`
=========  ===========  ==========================================================================================
scalar     1            r(x, y), the logit (Bradley–Terry; Ouyang et al. 2022)
hl_gauss   num_bins     r(x, y) = Σ_i softmax(logits)_i · centre_i, a categorical head over fixed bins
                        (Farebrother et al. 2024, "Stop Regressing"; Imani & White 2018)
gpm        dim = 2k     the preference embedding v_y ∈ R^{2k}; P(y ≻ y') = σ(v_yᵀ R v_y' / τ), R skew-symmetric
                        (Zhang et al. 2024, General Preference Model)
mixture    groups = K   (S, K): one Bradley–Terry reward per annotator group (Chakraborty et al. 2024, MaxMin-RLHF)
=========  ===========  ==========================================================================================

A model saved without ``preflab_reward.head`` (TRL's reward models, preflab's before heads existed) is ``scalar``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "HEADS",
    "GPMHead",
    "HLGaussHead",
    "MixtureHead",
    "RewardHead",
    "ScalarHead",
    "head_from_dict",
    "head_of_model",
]

HEADS: dict[str, type[RewardHead]] = {}


def _register(cls: type[RewardHead]) -> type[RewardHead]:
    HEADS[cls.name] = cls
    return cls


@dataclass(frozen=True)
class RewardHead:
    """Base: ``num_labels`` outputs of the classifier; :meth:`output` turns (S, num_labels) logits into what the
    scorer returns; ``scalar`` says whether that is one reward per sequence (a Bradley–Terry judge can use it)."""

    name: ClassVar[str] = ""
    scalar: ClassVar[bool] = True

    @property
    def num_labels(self) -> int:
        raise NotImplementedError

    def output(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@_register
@dataclass(frozen=True)
class ScalarHead(RewardHead):
    """One logit, the reward."""

    name: ClassVar[str] = "scalar"

    @property
    def num_labels(self) -> int:
        return 1

    def output(self, logits: Tensor) -> Tensor:
        return logits[:, 0]


@_register
@dataclass(frozen=True)
class HLGaussHead(RewardHead):
    """``num_bins`` logits over equal bins of [v_min, v_max]; the reward is the expected bin centre, and
    ``bt_reward`` trains that expectation on pairs (the head is a parametrisation of r; preference pairs carry no
    scalar target for the HL-Gauss cross-entropy of :func:`preflab.objectives.hl_gauss.hl_gauss`)."""

    name: ClassVar[str] = "hl_gauss"
    num_bins: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    sigma_ratio: float = 0.75

    def __post_init__(self) -> None:
        from ..objectives.hl_gauss import HLGaussParams

        try:
            HLGaussParams(self.v_min, self.v_max, self.num_bins, self.sigma_ratio)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=f"reward.{exc.field}") from None

    @property
    def num_labels(self) -> int:
        return self.num_bins

    def support(self, dtype: torch.dtype, device: Any) -> Tensor:
        from ..objectives.hl_gauss import hl_gauss_support

        return hl_gauss_support(self.v_min, self.v_max, self.num_bins, dtype).to(device)

    def output(self, logits: Tensor) -> Tensor:
        from ..objectives.hl_gauss import hl_gauss_decode

        return hl_gauss_decode(logits.float(), self.support(torch.float32, logits.device))


@_register
@dataclass(frozen=True)
class GPMHead(RewardHead):
    """``dim`` = 2k outputs: the preference embedding (L2-normalised when ``normalize``)."""

    name: ClassVar[str] = "gpm"
    scalar: ClassVar[bool] = False
    dim: int = 8
    tau: float = 0.1
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.dim < 2 or self.dim % 2:
            raise ConfigError(f"a preference embedding has an even size 2k ≥ 2, got {self.dim}", field="reward.dim")

    @property
    def num_labels(self) -> int:
        return self.dim

    def output(self, logits: Tensor) -> Tensor:
        return logits

    def prob(self, v_a: Tensor, v_b: Tensor) -> Tensor:
        """P(a ≻ b) = σ(v_aᵀ R v_b / τ) on (normalised) embeddings, as the ``gpm`` loss computes it."""
        from ..objectives.reward_models import gpm_prob

        if self.normalize:
            v_a, v_b = F.normalize(v_a.float(), dim=-1), F.normalize(v_b.float(), dim=-1)
        return gpm_prob(v_a.float(), v_b.float(), tau=self.tau)


@_register
@dataclass(frozen=True)
class MixtureHead(RewardHead):
    """``groups`` = K logits: r_k(x, y), one Bradley–Terry reward per latent annotator group."""

    name: ClassVar[str] = "mixture"
    scalar: ClassVar[bool] = False
    groups: int = 2

    def __post_init__(self) -> None:
        if self.groups < 1:
            raise ConfigError(f"a mixture needs at least one group, got {self.groups}", field="reward.groups")

    @property
    def num_labels(self) -> int:
        return self.groups

    def output(self, logits: Tensor) -> Tensor:
        return logits


def head_from_dict(spec: dict[str, Any] | None) -> RewardHead:
    """The head a saved ``preflab_reward.head`` describes (None: scalar)."""
    if not spec:
        return ScalarHead()
    spec = dict(spec)
    name = spec.pop("name", "scalar")
    if name not in HEADS:
        raise ConfigError(f"unknown reward head '{name}' (known: {', '.join(HEADS)})", field="reward.head")
    return HEADS[name](**spec)


def head_of_model(model: Any) -> RewardHead:
    """The head recorded in a model's config (scalar when none is)."""
    from .reward import REWARD_CONFIG_KEY

    info = getattr(getattr(model, "config", None), REWARD_CONFIG_KEY, None)
    return head_from_dict(info.get("head") if isinstance(info, dict) else None)
