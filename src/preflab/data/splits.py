"""Train / evaluation data from a :class:`DataConfig`, with a held-out split that never leaks prompts.

``eval_fraction`` holds out a fraction of the *prompts* (not of the rows): every record sharing a
prompt lands on the same side, so pairs expanded from one ranking, or several annotations of one
prompt, cannot appear in both train and eval. The assignment hashes each prompt with the run seed
(SHA-256), so it is reproducible and does not depend on row order.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from ..errors import DataError
from .config import DataConfig
from .load import LoadResult, load_preferences
from .serialize import Record


def prompt_key(record: Record) -> str:
    """A canonical string for a record's prompt (strings and message lists alike)."""
    return json.dumps(record.prompt, sort_keys=True, ensure_ascii=False)


def in_eval(record: Record, fraction: float, seed: int) -> bool:
    """Whether ``record``'s prompt falls in the held-out ``fraction`` (deterministic in the seed)."""
    digest = hashlib.sha256(f"{seed}|{prompt_key(record)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_by_prompt(records: list[Record], fraction: float, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """``(train, eval)``: records whose prompt hashes below ``fraction`` go to eval."""
    train: list[Record] = []
    held: list[Record] = []
    for r in records:
        (held if in_eval(r, fraction, seed) else train).append(r)
    return train, held


def load_data(
    cfg: DataConfig, seed: int = 0, output_dir: str | Path | None = None
) -> tuple[LoadResult, LoadResult | None]:
    """Load the training data of ``cfg`` and its evaluation data (None when no eval source is set)."""
    if cfg.path is None:
        raise DataError("no training data: set data.path", field="data.path")
    kwargs = cfg.load_kwargs(seed=seed, output_dir=output_dir)
    train = load_preferences(cfg.path, **kwargs)
    if cfg.eval_path is not None or cfg.eval_split is not None:
        eval_kwargs = dict(kwargs)
        if cfg.eval_split is not None:
            eval_kwargs["split"] = cfg.eval_split
        if kwargs["report_path"] is not None:
            report = Path(kwargs["report_path"])
            eval_kwargs["report_path"] = report.with_name(f"{report.stem}.eval{report.suffix}")
        held = load_preferences(cfg.eval_path or cfg.path, **eval_kwargs)
        return train, held
    if cfg.eval_fraction > 0:
        kept, held_records = split_by_prompt(train.records, cfg.eval_fraction, seed)
        if not held_records or not kept:
            raise DataError(
                f"eval_fraction={cfg.eval_fraction} leaves {len(kept)} training and {len(held_records)} evaluation "
                f"records from {len(train.records)}; use another fraction or an eval_path",
                file=train.source,
                field="data.eval_fraction",
            )
        held = replace(
            train,
            records=held_records,
            n_rows=len(held_records),
            skipped=Counter(),
            counts=Counter(),
            findings=[f"{len(held_records)} records held out for evaluation (eval_fraction)"],
            bad_rows=[],
        )
        train.records = kept
        train.findings.append(f"{len(held_records)} of {len(kept) + len(held_records)} records held out for evaluation")
        return train, held
    return train, None
