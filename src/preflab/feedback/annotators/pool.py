"""Annotator pools: a population of simulated annotators mixed by weight, and named presets.

Each vote is given by one member drawn with probability ∝ its weight (one seeded generator for the
pool, so a run's labels are reproducible). Pools are built from presets (:data:`PRESETS`) or from a
YAML/JSON spec validated by :class:`PoolSpec` (unknown keys are errors that name the key).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from ...config import Section, load_config
from ...errors import ConfigError
from .annotator import Annotator, BTAnnotator, Candidate, IntransitiveAnnotator, Vote


class AnnotatorPool:
    """Weighted mixture of annotators; ``vote`` draws a member, then its label."""

    def __init__(self, members: list[tuple[Annotator, float]], seed: int = 0) -> None:
        if not members:
            raise ConfigError("an annotator pool needs at least one annotator", field="annotators")
        weights = np.array([w for _, w in members], dtype=float)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError("annotator weights must be >= 0 and not all 0", field="annotators.weight")
        names = [a.name for a, _ in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"annotator names must be unique (got {names})", field="annotators.name")
        self.members = [a for a, _ in members]
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def draw(self) -> Annotator:
        """One member, drawn with probability equal to its weight."""
        return self.members[int(self.rng.choice(len(self.members), p=self.weights))]

    def vote(self, prompt, a: Candidate, b: Candidate) -> Vote:
        return self.draw().vote(prompt, a, b, rng=self.rng)

    def prob(self, prompt, a: Candidate, b: Candidate) -> float:
        """The population's P(label says a ≻ b): Σ_k w_k P_k(a ≻ b)."""
        return float(sum(w * m.prob(prompt, a, b) for m, w in zip(self.members, self.weights, strict=True)))

    @property
    def groups(self) -> dict[str | None, float]:
        """Population weight of each group."""
        out: dict[str | None, float] = {}
        for m, w in zip(self.members, self.weights, strict=True):
            out[m.group] = out.get(m.group, 0.0) + float(w)
        return out


class AnnotatorSpec(Section):
    """One simulated annotator."""

    name: str = Field(..., description="Unique name, recorded on every pair it labels.")
    kind: Literal["bt", "intransitive"] = Field("bt", description="Bradley–Terry or majority-of-3 (cyclic).")
    group: str | None = Field(None, description="User group, recorded on every pair it labels.")
    weight: float = Field(1.0, ge=0, description="Share of votes in the pool (normalised).")
    criteria: dict[str, float] | list[str] = Field(
        default_factory=lambda: {"gold": 1.0},
        description="bt: {criterion: weight}; intransitive: three criterion names.",
    )
    temperature: float = Field(0.1, ge=0, description="Bradley–Terry temperature (0 = deterministic).")
    flip_rate: float = Field(0.0, ge=0, le=0.5, description="Probability of flipping the drawn label.")
    length_bias: float = Field(0.0, description="Utility bonus per unit of ln(1 + words).")
    position_bias: float = Field(0.0, description="Utility bonus of the response shown first.")

    def build(self, seed: int = 0) -> Annotator:
        if self.kind == "intransitive":
            crit = tuple(self.criteria) if isinstance(self.criteria, list) else ("gold", "brevity", "diversity")
            return IntransitiveAnnotator(
                self.name, self.group, criteria=crit, temperature=self.temperature, flip_rate=self.flip_rate, seed=seed
            )
        crit = self.criteria if isinstance(self.criteria, dict) else {c: 1.0 for c in self.criteria}
        return BTAnnotator(
            self.name,
            self.group,
            criteria=crit,
            temperature=self.temperature,
            flip_rate=self.flip_rate,
            length_bias=self.length_bias,
            position_bias=self.position_bias,
            seed=seed,
        )


class PoolSpec(Section):
    """A pool of simulated annotators."""

    annotators: list[AnnotatorSpec] = Field(..., min_length=1, description="The pool's members.")

    def build(self, seed: int = 0) -> AnnotatorPool:
        return AnnotatorPool([(s.build(seed + i), s.weight) for i, s in enumerate(self.annotators)], seed=seed)


def _spec(*members: dict) -> PoolSpec:
    return PoolSpec(annotators=[AnnotatorSpec(**m) for m in members])


PRESETS: dict[str, PoolSpec] = {
    "gold": _spec({"name": "gold", "temperature": 0.0}),
    "bt": _spec({"name": "bt", "temperature": 0.1}),
    "noisy": _spec({"name": "noisy", "temperature": 0.05, "flip_rate": 0.2}),
    "biased": _spec({"name": "biased", "temperature": 0.1, "length_bias": 0.1, "position_bias": 0.05}),
    "groups": _spec(
        {"name": "concise", "group": "concise", "criteria": {"gold": 1.0, "brevity": 1.0}, "temperature": 0.1},
        {"name": "detailed", "group": "detailed", "criteria": {"gold": 1.0, "verbosity": 1.0}, "temperature": 0.1},
    ),
    "intransitive": _spec(
        {"name": "cyclic", "kind": "intransitive", "criteria": ["gold", "brevity", "diversity"], "temperature": 0.0}
    ),
    "mixed": _spec(
        {"name": "expert", "group": "majority", "weight": 0.4, "temperature": 0.05, "flip_rate": 0.1},
        {
            "name": "length_lover",
            "group": "majority",
            "weight": 0.2,
            "temperature": 0.1,
            "length_bias": 0.15,
            "position_bias": 0.05,
        },
        {"name": "concise", "group": "concise", "weight": 0.2, "criteria": {"gold": 1.0, "brevity": 1.0}},
        {"name": "detailed", "group": "detailed", "weight": 0.1, "criteria": {"gold": 1.0, "verbosity": 1.0}},
        {"name": "cyclic", "group": "cyclic", "weight": 0.1, "kind": "intransitive", "temperature": 0.0},
    ),
}


def load_pool(name_or_path: str, seed: int = 0) -> AnnotatorPool:
    """A preset by name (:data:`PRESETS`) or a YAML/JSON file holding a :class:`PoolSpec`."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path].build(seed)
    if not Path(name_or_path).is_file():
        raise ConfigError(
            f"unknown annotator pool '{name_or_path}': not a preset ({', '.join(PRESETS)}) nor a file", field="pool"
        )
    return load_config(name_or_path, cls=PoolSpec).build(seed)
