"""Task suites: named sets of families; ``default`` is the one the quickstart trains and evaluates on.

The default suite keeps families where SmolLM2-135M-Instruct sometimes succeeds and sometimes fails (mean
gold score between 0.15 and 0.85 when they were chosen), so that preference learning has headroom to show an
improvement. Since its scorer stopped crediting off-topic answers and the bare phrase (2026-12-07),
``ending_phrase`` scores 0.07-0.13 for the base model's sampled answers, under that band; trained policies
reach about 0.6 on it. The measured numbers are in docs/feedback-lab.md and the benchmark pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from .base import FAMILIES, Task, get_family


@dataclass(frozen=True)
class TaskSuite:
    name: str
    families: tuple[str, ...]
    description: str = ""

    def tasks(self, n: int, seed: int = 0) -> list[Task]:
        """``n`` tasks with distinct prompts, families interleaved round-robin (balanced to within one task per
        family). A family's k-th task is the k-th distinct prompt among ``make(seed, 0), make(seed, 1), …``,
        so the first tasks do not depend on ``n``."""
        if n < 0:
            raise ConfigError(f"number of tasks must be >= 0 (got {n})", field="n")
        fams = [get_family(f) for f in self.families]
        quota = [len(range(i, n, len(fams))) for i in range(len(fams))]
        drawn = [distinct_tasks(fam, q, seed) for fam, q in zip(fams, quota, strict=True)]
        return [drawn[j % len(fams)][j // len(fams)] for j in range(n)]


def distinct_tasks(fam, count: int, seed: int, max_tries: int = 20) -> list[Task]:
    """The first ``count`` tasks of a family whose prompts are distinct (repeats are skipped)."""
    out: list[Task] = []
    seen: set[str] = set()
    index = 0
    while len(out) < count:
        if index >= max_tries * max(count, 10):
            raise ConfigError(
                f"task family '{fam.name}' yields only {len(out)} distinct prompts (asked for {count})", field="n"
            )
        task = fam.make(seed, index)
        index += 1
        if task.prompt not in seen:
            seen.add(task.prompt)
            out.append(task)
    return out


SUITES: dict[str, TaskSuite] = {}


def register_suite(suite: TaskSuite) -> TaskSuite:
    for fam in suite.families:
        get_family(fam)  # fail early on a typo
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> TaskSuite:
    """A registered suite by name, or a single family's name as a one-family suite."""
    if name in SUITES:
        return SUITES[name]
    if name in FAMILIES:
        return TaskSuite(name=name, families=(name,), description=FAMILIES[name].description)
    known = ", ".join(sorted(SUITES) + sorted(FAMILIES))
    raise ConfigError(f"unknown task suite '{name}' (suites and families: {known})", field="suite")


DEFAULT_SUITE = "default"

#: The version of the tasks' parameters (what their scorers check), part of the quickstart's prompts stage
#: fingerprint, so a run directory whose tasks lack newer checks draws its tasks again instead of reusing them.
#: 2: ``distinct_words``, word_limit's and ending_phrase's ``min_words``, ending_phrase's ``topic_words``,
#: bullet_list's ``distinct_items``, json_object's ``filled_values``.
TASKS_VERSION = 2

register_suite(
    TaskSuite(
        name=DEFAULT_SUITE,
        families=(
            "word_limit",
            "include_keywords",
            "exclude_keyword",
            "bullet_list",
            "json_object",
            "ending_phrase",
            "arithmetic",
            "sentiment",
        ),
        description="instruction-following families with headroom for SmolLM2-135M-Instruct",
    )
)
register_suite(TaskSuite(name="all", families=tuple(FAMILIES), description="every registered family"))
register_suite(
    TaskSuite(
        name="length",
        families=("word_limit", "min_words"),
        description="conflicting length criteria (concise vs detailed)",
    )
)
