"""The quickstart's default config: ``recipes/quickstart.yaml`` holds the same values (a test checks)."""

from __future__ import annotations

from typing import Any

QUICKSTART_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "output_dir": "runs/quickstart",
    "model": {"name_or_path": "smollm2-135m-instruct"},
    "quickstart": {
        "suite": "default",
        "train_prompts": 288,
        "eval_prompts": 200,
        "samples_per_prompt": 10,
        "max_new_tokens": 64,
        "sample_batch_size": 256,
        "temperature": 0.8,
        "rounds": 4,
        "pool": "noisy",
        "pair_strategy": "best-vs-worst",
    },
    "algorithm": "rpo",
    "objective": {"params": {"beta": 0.5}},
    "lora": {"enabled": True, "r": 16, "alpha": 32.0, "dropout": 0.0},
    "reference": {"mode": "cached"},
    "train": {
        "lr": 5.0e-4,
        "batch_size": 8,
        "epochs": 2.0,
        "warmup_ratio": 0.1,
        "scheduler": "cosine",
        "max_length": 384,
        "layout": "prefix_shared",
        "save_every": 25,
        "keep_last": 2,
        "bf16": "auto",
    },
}


def quickstart_defaults(overrides: list[str] | None = None):
    """The default quickstart :class:`~preflab.config.RunConfig`, with ``--set`` overrides applied."""
    import copy

    from ..config import apply_overrides, validate_config

    overrides = overrides or []
    return validate_config(apply_overrides(copy.deepcopy(QUICKSTART_DEFAULTS), overrides), overrides=overrides)
