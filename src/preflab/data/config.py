"""The ``data:`` section of a run config.

A trainer loads its data with ``load_data(cfg.data, seed=cfg.seed, output_dir=cfg.output_dir)``
(:mod:`preflab.data.splits`), or directly with ``load_preferences(**cfg.data.load_kwargs(...))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..sections import Section

FormatName = Literal[
    "preference", "implicit_preference", "unpaired", "rated", "ranking", "prompt_completion", "messages"
]
KindName = Literal["pairs", "rankings", "unpaired", "demonstrations"]
RuleName = Literal["best-vs-worst", "best-vs-random", "all-pairs", "adjacent"]


class DataConfig(Section):
    """Where the preference data comes from and how bad rows are handled."""

    path: str | None = Field(
        None, description="Data source: .jsonl/.json/.csv(.gz)/.parquet file, save_to_disk directory, or hub name."
    )
    format: FormatName | None = Field(None, description="Row layout; null detects it from the first row.")
    kind: KindName | None = Field(
        None, description="Records to produce (pairs, rankings, unpaired, demonstrations); null keeps the format's own."
    )
    split: str = Field("train", description="Split to read from a datasets directory or hub dataset.")
    on_bad_row: Literal["error", "skip"] = Field(
        "error", description="error: stop at the first bad row; skip: skip it, count it, write it to the report."
    )
    max_chars: int | None = Field(
        None, gt=0, description="Longest allowed prompt + response in characters; longer rows are bad rows."
    )
    rule: RuleName = Field("best-vs-worst", description="How rankings / rated completions become pairs.")
    score_key: str | None = Field(
        None, description="Rated completions: the completion field holding the score (null = auto)."
    )
    report_path: str | None = Field(
        None, description="Skipped-rows report (JSONL); null = <output_dir>/data_skipped.jsonl."
    )
    eval_path: str | None = Field(None, description="Separate evaluation data source (same options as path).")
    eval_split: str | None = Field(
        None, description="Evaluation split of the same datasets directory / hub dataset as path (e.g. test)."
    )
    eval_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="Hold out this fraction of prompts of path for evaluation (0 = none)."
    )

    @model_validator(mode="after")
    def _one_eval_source(self) -> DataConfig:
        chosen = [name for name in ("eval_path", "eval_split") if getattr(self, name) is not None]
        if self.eval_fraction > 0:
            chosen.append("eval_fraction")
        if len(chosen) > 1:
            raise ValueError(f"give only one evaluation source, not {' and '.join(chosen)}")
        return self

    def report_file(self, output_dir: str | Path) -> Path:
        """The skipped-rows report path for a run writing into ``output_dir``."""
        return Path(self.report_path) if self.report_path else Path(output_dir) / "data_skipped.jsonl"

    def load_kwargs(self, seed: int = 0, output_dir: str | Path | None = None) -> dict[str, Any]:
        """Keyword arguments for ``load_preferences(self.path, **kwargs)`` on the training data."""
        report = self.report_file(output_dir) if (output_dir is not None or self.report_path) else None
        return {
            "format": self.format,
            "kind": self.kind,
            "on_bad_row": self.on_bad_row,
            "max_chars": self.max_chars,
            "rule": self.rule,
            "split": self.split,
            "report_path": report,
            "seed": seed,
            "score_key": self.score_key,
        }
