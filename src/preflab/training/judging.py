"""The online schedule's judge and prompts when ``train()`` is given no judge: built from ``online:``.

``online.tasks`` names a task suite of the feedback lab; ``num_prompts`` tasks are drawn from it (seeded
by the run's seed). Their prompts are the training prompts when the run has no data, and gold or
annotator judges score answers with the tasks' gold scorers. The judge itself comes from
:func:`preflab.feedback.make_judge` (``online.judge`` with ``online.judge_args``).
"""

from __future__ import annotations

from typing import Any


def judge_from_config(cfg: Any) -> tuple[Any, list[str]]:
    """``(judge, task prompts)`` for ``cfg.online``."""
    from ..feedback import make_judge
    from ..feedback.tasks import get_suite

    online = cfg.online
    tasks = get_suite(online.tasks).tasks(online.num_prompts, seed=cfg.seed)
    return make_judge(online.judge, tasks=tasks, **online.judge_args), [t.prompt for t in tasks]
