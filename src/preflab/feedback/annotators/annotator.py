"""Simulated annotators over gold scores (AlpacaFarm's idea with a known ground truth).

Dubois et al. 2023, "AlpacaFarm: A Simulation Framework for Methods that Learn from Human Feedback":
simulated labellers with noise and biases stand in for people. Here every annotator is a documented
random function of the two responses, so label noise, biases and group disagreement are known exactly.

:class:`BTAnnotator` — utility u(y) = Σ_c w_c · c(y) + λ_len · ln(1 + words(y)); the response shown
first gets a bonus β_pos; P(first ≻ second) = σ((u_a − u_b + β_pos) / τ) (Bradley–Terry with
temperature τ; τ = 0 picks the larger, a tie is a coin toss). The drawn label is then flipped with
probability ε (uniform label noise, as assumed by robust DPO, Chowdhury et al. 2024).

:class:`IntransitiveAnnotator` — majority vote over three criteria (May 1954, "Intransitivity, utility,
and the aggregation of preference patterns"): when the criteria rank three responses in a Latin-square
pattern, its preferences cycle (a ≻ b ≻ c ≻ a), which no Bradley–Terry reward can represent.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ..tasks.text import words
from .criteria import Criterion, get_criterion


@dataclass(frozen=True)
class Candidate:
    """A response and its gold score (from the task's scorer)."""

    text: str
    gold: float


@dataclass(frozen=True)
class Vote:
    """One annotation of (a shown first, b shown second)."""

    a_wins: bool
    prob: float
    """P(label = a) including label noise: (1 − ε) p + ε (1 − p)."""
    clean_prob: float
    """P(a ≻ b) before label noise."""
    flipped: bool
    annotator: str
    group: str | None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _choice_prob(diff: float, temperature: float) -> float:
    if temperature == 0:
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    return _sigmoid(diff / temperature)


class Annotator(ABC):
    """A seeded simulated annotator: ``vote(prompt, a, b)`` draws a label, ``prob`` gives its law."""

    def __init__(self, name: str, group: str | None = None, *, flip_rate: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= flip_rate <= 0.5:
            raise ConfigError(f"flip_rate must be in [0, 0.5] (got {flip_rate})", field="flip_rate")
        self.name = name
        self.group = group
        self.flip_rate = flip_rate
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def clean_prob(self, prompt, a: Candidate, b: Candidate) -> float:
        """P(a ≻ b) before label noise, with a shown first."""

    def prob(self, prompt, a: Candidate, b: Candidate) -> float:
        """P(the label says a ≻ b), label noise included."""
        p = self.clean_prob(prompt, a, b)
        return (1.0 - self.flip_rate) * p + self.flip_rate * (1.0 - p)

    def vote(self, prompt, a: Candidate, b: Candidate, rng: np.random.Generator | None = None) -> Vote:
        """Draw one label (two uniforms per vote, so a seed fixes every label of a run)."""
        rng = rng if rng is not None else self.rng
        p = self.clean_prob(prompt, a, b)
        u_choice, u_flip = rng.random(2)
        clean = bool(u_choice < p)
        flipped = bool(u_flip < self.flip_rate)
        return Vote(
            a_wins=clean != flipped,
            prob=(1 - self.flip_rate) * p + self.flip_rate * (1 - p),
            clean_prob=p,
            flipped=flipped,
            annotator=self.name,
            group=self.group,
        )


class BTAnnotator(Annotator):
    """Bradley–Terry choice over a weighted utility, with temperature, length and position bias."""

    def __init__(
        self,
        name: str = "bt",
        group: str | None = None,
        *,
        criteria: dict[str, float] | None = None,
        temperature: float = 0.1,
        flip_rate: float = 0.0,
        length_bias: float = 0.0,
        position_bias: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(name, group, flip_rate=flip_rate, seed=seed)
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (got {temperature})", field="temperature")
        weights = criteria if criteria is not None else {"gold": 1.0}
        self.criteria: list[tuple[Criterion, float]] = [(get_criterion(c), float(w)) for c, w in weights.items()]
        self.temperature = temperature
        self.length_bias = length_bias
        self.position_bias = position_bias

    def utility(self, c: Candidate) -> float:
        """Σ_c w_c · c(y) + λ_len · ln(1 + words(y))."""
        u = sum(w * crit(c.text, c.gold) for crit, w in self.criteria)
        if self.length_bias:
            u += self.length_bias * math.log1p(len(words(c.text)))
        return u

    def clean_prob(self, prompt, a: Candidate, b: Candidate) -> float:
        return _choice_prob(self.utility(a) - self.utility(b) + self.position_bias, self.temperature)


class IntransitiveAnnotator(Annotator):
    """Prefers the response that wins on a majority of three criteria (ties within ``margin`` abstain).

    With d = (#criteria a wins) − (#criteria b wins), P(a ≻ b) = σ(d / τ) (τ = 0: the majority, or a coin
    toss on d = 0).
    """

    def __init__(
        self,
        name: str = "intransitive",
        group: str | None = None,
        *,
        criteria: tuple = ("gold", "brevity", "diversity"),
        temperature: float = 0.0,
        margin: float = 1e-9,
        flip_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(name, group, flip_rate=flip_rate, seed=seed)
        if len(criteria) != 3:
            raise ConfigError(f"an intransitive annotator needs 3 criteria (got {len(criteria)})", field="criteria")
        self.criteria = [get_criterion(c) for c in criteria]
        self.temperature = temperature
        self.margin = margin

    def clean_prob(self, prompt, a: Candidate, b: Candidate) -> float:
        d = 0
        for crit in self.criteria:
            diff = crit(a.text, a.gold) - crit(b.text, b.gold)
            d += (diff > self.margin) - (diff < -self.margin)
        return _choice_prob(float(d), self.temperature)
