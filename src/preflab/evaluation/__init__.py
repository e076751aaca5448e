"""Evaluation: win rates with confidence, length control, null-model check, KL, gold vs proxy reward,
ranking accuracy, per-group results, and the self-contained HTML report.
"""

from .config import EvalConfig
from .gold import gold_by_family
from .groups import GroupResult, GroupResults, per_group_results
from .kl import KLEstimate, estimate_kl, exact_kl
from .length_control import LengthControlledWinRate, fit_logistic, length_controlled_win_rate
from .null_model import DEFAULT_NULL_ANSWERS, NullModelCheck, null_model_check
from .overoptimization import OverOptimisation, OverOptPoint, fit_scaling_law, overoptimisation
from .ranking import RankingAccuracy, ranking_accuracy
from .result import EvalResult, FamilyGold
from .stats import Estimate, bootstrap_mean
from .winrate import WinRate, judge_preferences, win_rate

__all__ = [
    "DEFAULT_NULL_ANSWERS",
    "Estimate",
    "EvalConfig",
    "EvalResult",
    "FamilyGold",
    "GroupResult",
    "GroupResults",
    "KLEstimate",
    "LengthControlledWinRate",
    "NullModelCheck",
    "OverOptPoint",
    "OverOptimisation",
    "RankingAccuracy",
    "WinRate",
    "bootstrap_mean",
    "build_report",
    "estimate_kl",
    "evaluate_answers",
    "evaluate_policies",
    "exact_kl",
    "fit_logistic",
    "fit_scaling_law",
    "gold_by_family",
    "judge_preferences",
    "length_controlled_win_rate",
    "null_model_check",
    "overoptimisation",
    "pair_ranking_accuracy",
    "per_group_results",
    "ranking_accuracy",
    "run_eval",
    "sample_kl",
    "win_rate",
]

_LAZY = {
    "build_report": ".report",
    "evaluate_answers": ".answers",
    "evaluate_policies": ".policies",
    "pair_ranking_accuracy": ".policies",
    "run_eval": ".runner",
    "sample_kl": ".lm",
}


def __getattr__(name: str):
    """Model-, plotting- and CLI-level helpers import torch / matplotlib: load them on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
