"""Judges behind one interface: gold/rule, reward model, pairwise preference model, LLM, simulated; each
registered by name (:func:`register_judge`) and built from a config by :func:`make_judge`."""

from .gold import GoldJudge
from .gpm import GPMJudge
from .llm import JUDGE_TEMPLATE, LLMJudge
from .preference_model import PAIR_TEMPLATE, PreferenceModelJudge
from .registry import JUDGES, get_judge, judge_name, make_judge, register_judge
from .reward_model import RewardEnsembleJudge, RewardFnJudge, RewardModelJudge
from .simulated import AnnotatorJudge

__all__ = [
    "JUDGES",
    "JUDGE_TEMPLATE",
    "PAIR_TEMPLATE",
    "AnnotatorJudge",
    "GPMJudge",
    "GoldJudge",
    "LLMJudge",
    "PreferenceModelJudge",
    "RewardFnJudge",
    "RewardEnsembleJudge",
    "RewardModelJudge",
    "get_judge",
    "judge_name",
    "make_judge",
    "register_judge",
]
