"""Feedback: gold-scored task suites, simulated annotators, judges, and preference-data builders."""

from .annotators import AnnotatorPool, BTAnnotator, Candidate, IntransitiveAnnotator, load_pool
from .builders import (
    annotate_pairs,
    annotate_rankings,
    annotator_pairs,
    rso_pairs,
    rso_select,
    rule_pairs,
    to_rankings,
    to_unpaired,
)
from .judge import Judge
from .judges import (
    JUDGES,
    AnnotatorJudge,
    GoldJudge,
    LLMJudge,
    PreferenceModelJudge,
    RewardEnsembleJudge,
    RewardFnJudge,
    RewardModelJudge,
    make_judge,
    register_judge,
)
from .samples import PromptSamples, read_samples, usable_samples, write_samples
from .tasks import DEFAULT_SUITE, FAMILIES, SUITES, Task, TaskSuite, get_suite

__all__ = [
    "DEFAULT_SUITE",
    "FAMILIES",
    "JUDGES",
    "SUITES",
    "AnnotatorJudge",
    "AnnotatorPool",
    "BTAnnotator",
    "Candidate",
    "GoldJudge",
    "IntransitiveAnnotator",
    "Judge",
    "LLMJudge",
    "PreferenceModelJudge",
    "PromptSamples",
    "RewardFnJudge",
    "RewardEnsembleJudge",
    "RewardModelJudge",
    "Task",
    "TaskSuite",
    "annotate_pairs",
    "annotator_pairs",
    "annotate_rankings",
    "get_suite",
    "make_judge",
    "load_pool",
    "register_judge",
    "read_samples",
    "usable_samples",
    "rso_pairs",
    "rso_select",
    "rule_pairs",
    "to_rankings",
    "to_unpaired",
    "write_samples",
]
