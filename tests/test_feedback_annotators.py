"""Simulated annotators: measured flip rate, biases and group behaviour match their configuration.

Each check draws N seeded votes and asserts the measured frequency is within 4 binomial standard errors
of the configured probability (hand-computed from the annotator's formula).
"""

from __future__ import annotations

import math

import pytest

from preflab.errors import ConfigError
from preflab.feedback.annotators import (
    PRESETS,
    AnnotatorPool,
    BTAnnotator,
    Candidate,
    IntransitiveAnnotator,
    load_pool,
)

N = 4000


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def within_binomial(k: int, n: int, p: float, z: float = 4.0) -> bool:
    return abs(k / n - p) <= z * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12


def first_win_rate(annotator, a: Candidate, b: Candidate, n: int = N) -> int:
    return sum(annotator.vote("q", a, b).a_wins for _ in range(n))


GOOD, BAD = Candidate("good answer", 0.9), Candidate("bad answer", 0.1)


def test_flip_rate_matches_configuration():
    ann = BTAnnotator("noisy", temperature=0.0, flip_rate=0.2, seed=1)
    votes = [ann.vote("q", GOOD, BAD) for _ in range(N)]
    wrong = sum(not v.a_wins for v in votes)
    assert within_binomial(wrong, N, 0.2)
    assert all(v.flipped == (not v.a_wins) for v in votes)  # clean label is always GOOD at τ = 0
    assert votes[0].prob == pytest.approx(0.8)
    assert ann.prob("q", BAD, GOOD) == pytest.approx(0.2)


def test_bradley_terry_temperature():
    ann = BTAnnotator(temperature=0.1, seed=2)
    a, b = Candidate("x", 0.6), Candidate("y", 0.5)
    p = sigmoid(0.1 / 0.1)
    assert ann.clean_prob("q", a, b) == pytest.approx(p)
    assert within_binomial(first_win_rate(ann, a, b), N, p)


def test_position_bias():
    ann = BTAnnotator(temperature=0.1, position_bias=0.05, seed=3)
    a, b = Candidate("same", 0.5), Candidate("same", 0.5)
    assert within_binomial(first_win_rate(ann, a, b), N, sigmoid(0.5))


def test_length_bias():
    ann = BTAnnotator(temperature=0.1, length_bias=0.1, seed=4)
    long, short = Candidate(" ".join(["w"] * 99), 0.5), Candidate(" ".join(["w"] * 9), 0.5)
    p = sigmoid(0.1 * (math.log(100) - math.log(10)) / 0.1)
    assert ann.clean_prob("q", long, short) == pytest.approx(p)
    assert within_binomial(first_win_rate(ann, long, short), N, p)


def test_groups_disagree_as_configured():
    pool = load_pool("groups", seed=5)
    short, long = Candidate(" ".join(["s"] * 10), 0.5), Candidate(" ".join(["l"] * 60), 0.5)
    votes = [pool.vote("q", short, long) for _ in range(N)]
    by_group = {g: [v for v in votes if v.group == g] for g in ("concise", "detailed")}
    assert within_binomial(len(by_group["concise"]), N, 0.5)
    # concise: u = gold + brevity; Δu = (1 − 0.1) − (1 − 0.6) = 0.5 at τ = 0.1
    assert within_binomial(sum(v.a_wins for v in by_group["concise"]), len(by_group["concise"]), sigmoid(5))
    assert within_binomial(sum(v.a_wins for v in by_group["detailed"]), len(by_group["detailed"]), sigmoid(-5))
    assert {v.annotator for v in by_group["concise"]} == {"concise"}
    assert pool.prob("q", short, long) == pytest.approx(0.5 * sigmoid(5) + 0.5 * sigmoid(-5))


def test_pool_weights_and_reproducibility():
    pool = load_pool("mixed", seed=6)
    names = [pool.vote("q", GOOD, BAD).annotator for _ in range(N)]
    for member, w in zip(pool.members, pool.weights, strict=True):
        assert within_binomial(names.count(member.name), N, w)
    again = load_pool("mixed", seed=6)
    assert [again.vote("q", GOOD, BAD).annotator for _ in range(N)] == names
    assert pool.groups == pytest.approx({"majority": 0.6, "concise": 0.2, "detailed": 0.1, "cyclic": 0.1})


def test_intransitive_annotator_cycles():
    # criteria (gold, brevity, diversity) rank x, y, z as a Latin square:
    #   gold: x > z > y;  brevity (shorter): z > y > x;  diversity (type/token): y > x > z
    x = Candidate(" ".join(f"w{i} w{i}" for i in range(30)), 0.9)  # 60 words, diversity 0.5
    y = Candidate(" ".join(f"v{i}" for i in range(30)), 0.1)  # 30 words, diversity 1.0
    z = Candidate("a a a a a b b b b b", 0.5)  # 10 words, diversity 0.2
    ann = IntransitiveAnnotator(seed=7)
    assert ann.clean_prob("q", y, x) == 1.0
    assert ann.clean_prob("q", z, y) == 1.0
    assert ann.clean_prob("q", x, z) == 1.0  # y ≻ x, z ≻ y, x ≻ z: a cycle
    assert ann.clean_prob("q", x, y) == 0.0
    # a Bradley–Terry annotator on the same responses is transitive
    bt = BTAnnotator(temperature=0.0)
    wins = {(i, j): bt.clean_prob("q", a, b) for i, a in enumerate((x, y, z)) for j, b in enumerate((x, y, z))}
    assert wins[(0, 2)] == 1.0 and wins[(2, 1)] == 1.0 and wins[(0, 1)] == 1.0


def test_spec_validation(tmp_path):
    spec = tmp_path / "pool.yaml"
    spec.write_text("annotators:\n  - name: a\n    flip_rate: 0.1\n    temprature: 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key .annotators\.0\.temprature"):
        load_pool(str(spec))
    spec.write_text(
        "annotators:\n  - name: a\n    flip_rate: 0.1\n    weight: 2\n  - name: b\n    group: g\n"
        "    kind: intransitive\n    criteria: [gold, brevity, verbosity]\n",
        encoding="utf-8",
    )
    pool = load_pool(str(spec))
    assert pool.weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    assert pool.members[0].flip_rate == 0.1 and pool.members[1].group == "g"
    with pytest.raises(ConfigError, match="unknown annotator pool"):
        load_pool("nope")
    with pytest.raises(ConfigError, match="flip_rate"):
        BTAnnotator(flip_rate=0.7)
    with pytest.raises(ConfigError, match="unique"):
        AnnotatorPool([(BTAnnotator("a"), 1.0), (BTAnnotator("a"), 1.0)])
    assert set(PRESETS) >= {"gold", "noisy", "biased", "groups", "intransitive", "mixed"}
