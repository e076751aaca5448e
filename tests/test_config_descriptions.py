"""Config field descriptions are the docs' config reference (docs/_hooks/generated.py): each is one short sentence
saying what the key does, with no measurements (those belong on docs/performance.md and the benchmark pages)."""

from __future__ import annotations

import re

import pydantic
import pytest

from preflab.config import RunConfig
from preflab.feedback.annotators.pool import PoolSpec

MEASUREMENT = re.compile(r"\d\s*(min|s|ms|%|×|x|GiB|MiB|GB|MB)\b|faster|slower|pairs/s|tokens/s|measured", re.I)


def _fields(model: type[pydantic.BaseModel], prefix: str = "", seen: set | None = None):
    seen = set() if seen is None else seen
    if model in seen:
        return
    seen.add(model)
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}", info.description
        for arg in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
                yield from _fields(arg, f"{prefix}{name}.", seen)


FIELDS = [*_fields(RunConfig), *_fields(PoolSpec, "pool.")]


def test_every_section_is_walked():
    keys = {key for key, _ in FIELDS}
    assert {"train.compile", "online.samples_per_prompt", "quickstart.pair_strategy", "pool.annotators"} <= keys


@pytest.mark.parametrize(("key", "description"), FIELDS, ids=[key for key, _ in FIELDS])
def test_a_description_is_one_short_sentence_without_measurements(key, description):
    assert description, f"{key} has no description"
    assert len(description) <= 110, f"{key}: {len(description)} characters"
    assert not re.search(r"(?<!e\.g)[.!?]\s+[A-Z]", description), f"{key}: more than one sentence"
    assert not MEASUREMENT.search(description), f"{key}: a measurement ({MEASUREMENT.search(description)[0]})"
