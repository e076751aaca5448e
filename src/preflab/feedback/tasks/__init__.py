"""Gold-scored task suites: prompt families from seeded templates, each with a documented scorer."""

from . import arithmetic, ending, formatting, keywords, length, sentiment  # noqa: F401  (register families)
from .base import FAMILIES, Task, TaskFamily, get_family, register_family, score_task, task_from_dict
from .suites import DEFAULT_SUITE, SUITES, TASKS_VERSION, TaskSuite, get_suite, register_suite

__all__ = [
    "DEFAULT_SUITE",
    "FAMILIES",
    "SUITES",
    "TASKS_VERSION",
    "Task",
    "TaskFamily",
    "TaskSuite",
    "get_family",
    "get_suite",
    "register_family",
    "register_suite",
    "score_task",
    "task_from_dict",
]
