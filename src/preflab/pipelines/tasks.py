"""The quickstart's tasks: training and held-out tasks drawn from a gold-scored suite, balanced over its families
and disjoint by prompt text (:func:`split_tasks`), and read back from a ``prompts`` stage's file."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ..errors import ConfigError


def split_tasks(suite_name: str, n_train: int, n_eval: int, seed: int) -> tuple[list, list, int]:
    """Training and held-out tasks, balanced over the suite's families and disjoint by prompt text.

    Families are drawn round-robin, each from its own seeded stream, skipping prompts already drawn
    (a family whose templates run out contributes what it has; the others fill in). Each family's
    tasks are then split between held-out and training in proportion (largest remainders), so both sets
    cover every family. Returns (train, held_out, repeated prompts skipped).
    """
    from ..feedback import get_suite
    from ..feedback.tasks import get_family

    suite = get_suite(suite_name)
    want = n_train + n_eval
    fams = [get_family(f) for f in suite.families]
    seen: set[str] = set()
    by_family: dict[str, list] = {f.name: [] for f in fams}
    index = dict.fromkeys(by_family, 0)
    misses = dict.fromkeys(by_family, 0)
    total = repeats = 0
    max_misses = 200  # consecutive repeats before a family counts as exhausted
    while total < want:
        active = [f for f in fams if misses[f.name] < max_misses]
        if not active:
            raise ConfigError(
                f"suite '{suite_name}' has only {total} distinct prompts for seed {seed}; asked for {want}",
                field="quickstart.train_prompts",
            )
        for fam in active:
            if total == want:
                break
            while misses[fam.name] < max_misses:
                task = fam.make(seed, index[fam.name])
                index[fam.name] += 1
                if task.prompt in seen:
                    misses[fam.name] += 1
                    repeats += 1
                    continue
                misses[fam.name] = 0
                seen.add(task.prompt)
                by_family[fam.name].append(task)
                total += 1
                break
    quotas = {f: n_eval * len(ts) / want for f, ts in by_family.items()}
    alloc = {f: int(q) for f, q in quotas.items()}
    for f in sorted(quotas, key=lambda f: quotas[f] - alloc[f], reverse=True)[: n_eval - sum(alloc.values())]:
        alloc[f] += 1
    rng = random.Random(f"{seed}|split")
    train_set, eval_set = [], []
    for f, ts in by_family.items():
        order = list(range(len(ts)))
        rng.shuffle(order)
        held = set(order[: alloc[f]])
        eval_set += [t for i, t in enumerate(ts) if i in held]
        train_set += [t for i, t in enumerate(ts) if i not in held]
    return train_set, eval_set, repeats


def read_tasks(path: Path) -> tuple[list, list]:
    """The training and held-out tasks a ``prompts`` stage wrote (``prompts.jsonl``), each row checked."""
    from ..feedback.tasks import task_from_dict

    train, held = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        row = json.loads(line)
        (train if row["split"] == "train" else held).append(task_from_dict(row["task"], file=str(path), line=i))
    return train, held
