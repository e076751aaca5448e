"""Objectives: pure functions of tensors, registered by name."""

# Importing an objective module registers its objectives.
from . import (  # noqa: F401
    hl_gauss,
    kto,
    listwise,
    maxmin,
    nash,
    online,
    pairwise,
    policy_gradient,
    reference_free,
    reward_models,
    self_play,
    sft,
    sppo,
)
from .base import (
    REGISTRY,
    DemonstrationInputs,
    ObjectiveSpec,
    PairInputs,
    PreferenceEmbeddingInputs,
    RankingInputs,
    RewardPairInputs,
    ScalarTargetInputs,
    UnpairedInputs,
    get_objective,
    register,
    weighted_mean,
)
from .hl_gauss import hl_gauss_decode, hl_gauss_support, hl_gauss_target
from .reward_models import gpm_operator, gpm_prob, gpm_score

__all__ = [
    "REGISTRY",
    "DemonstrationInputs",
    "ObjectiveSpec",
    "PairInputs",
    "PreferenceEmbeddingInputs",
    "RankingInputs",
    "RewardPairInputs",
    "ScalarTargetInputs",
    "UnpairedInputs",
    "get_objective",
    "gpm_operator",
    "gpm_prob",
    "gpm_score",
    "hl_gauss_decode",
    "hl_gauss_support",
    "hl_gauss_target",
    "register",
    "weighted_mean",
]
