"""The algorithm table: the one place that names an algorithm.

An algorithm = **objective** (a registered pure loss, :mod:`preflab.objectives`) × **data schedule** (where
the next batch comes from) × **reference schedule** (what the log-ratios are taken against), with its default
parameters and the claim its paper makes about what it converges to (DESIGN.md, "The central idea"). The
**model** it trains is the policy for every algorithm but the reward-model fits (``bt_reward``), which train a
scalar head r(x, y) on the same data schedule and loop (:data:`MODELS`).

The exact testbed (:mod:`preflab.testbeds.algorithms`) and the language-model trainer
(:mod:`preflab.training`) both read this table: each keys its schedule implementations by the
(data schedule, reference schedule) of a row, so an algorithm checked on the testbed is the algorithm that
trains an LM. ``runs`` says where each one runs today; tests check that it agrees with both
implementations. A run config names ``algorithm:``; an algorithm without a language-model schedule is a
config error, never a silent downgrade. ``preflab algorithms`` prints this table.

Adding an algorithm: one objective (if new), one row (:mod:`preflab.algorithm_table`; the names a row is
written in are in :mod:`preflab.algorithm_row` and re-exported here), one testbed test (``verified_by``), and a
schedule only if its (data, reference) pair is new.

A row may leave its objective open (``objective_choice``): online DPO's schedule (pairs sampled from the
current policy and judged at every step) and iterative DPO's (rounds of pairs sampled from π_t and judged) train
any objective the table trains on offline pairs, so ``algorithm: online_dpo`` with ``objective: {name: ipo}`` is
online IPO (Calandriello et al. 2024), with ``simpo`` online SimPO, and ``algorithm: iterative_dpo`` with
``ipo`` is iterative IPO. Online-ness stays the data schedule of a row, never a prefix of a name;
:func:`with_objective` gives the row with the chosen objective: the row's own reference schedule (π_ref for
online DPO, π_t for iterative DPO) for an objective with a reference, none for SimPO and ORPO, and the
defaults of that objective's offline row. What such a pair converges to is not the row's claim: a
:class:`Variant` in :data:`VARIANTS` carries the claim and test of one (algorithm, objective) pair, and a pair
without one claims :data:`NOT_CHECKED`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from .algorithm_row import (
    DATA_SCHEDULES,
    FIXED,
    GEOMETRIC_MIXTURE,
    GROUP_DUAL,
    ITERATIVE,
    LM,
    MODELS,
    NONE,
    OFFLINE_DEMONSTRATIONS,
    OFFLINE_PAIRS,
    OFFLINE_RANKINGS,
    OFFLINE_UNPAIRED,
    ONLINE_PAIRS,
    POLICY,
    POLICY_GRADIENT,
    PREVIOUS_ITERATE,
    PROX_SNAPSHOTS,
    REFERENCE_SCHEDULES,
    REWARD,
    ROLLOUTS,
    TESTBED,
    Algorithm,
)
from .algorithm_table import ROWS
from .errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "DATA_SCHEDULES",
    "FIXED",
    "GEOMETRIC_MIXTURE",
    "GROUP_DUAL",
    "ITERATIVE",
    "LM",
    "MODELS",
    "NONE",
    "NOT_CHECKED",
    "OBJECTIVE_ONLY",
    "OFFLINE_DEMONSTRATIONS",
    "OFFLINE_PAIRS",
    "OFFLINE_RANKINGS",
    "OFFLINE_UNPAIRED",
    "ONLINE_PAIRS",
    "POLICY",
    "POLICY_GRADIENT",
    "PREVIOUS_ITERATE",
    "PROX_SNAPSHOTS",
    "REFERENCE_SCHEDULES",
    "REWARD",
    "ROLLOUTS",
    "TESTBED",
    "VARIANTS",
    "Algorithm",
    "Variant",
    "get_algorithm",
    "objective_choices",
    "variants_of",
    "with_objective",
]

# Registered objectives that are not an algorithm's loss on their own (models fitted for the loop).
OBJECTIVE_ONLY: dict[str, str] = {
    "hl_gauss": "fits a value / reward head by classification (reward.head: hl_gauss of bt_reward)",
}


ALGORITHMS: dict[str, Algorithm] = {row.name: row for row in ROWS}
if len(ALGORITHMS) != len(ROWS):  # pragma: no cover - a duplicated row is a bug in algorithm_table.py
    raise RuntimeError("an algorithm is named twice in the table")


def get_algorithm(name: str, *, field_name: str = "algorithm") -> Algorithm:
    """Look an algorithm up by name; an unknown name is a one-line ConfigError naming the closest one."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown algorithm '{name}'{hint} (see `preflab algorithms`)", field=field_name)
    return ALGORITHMS[name]


def objective_choices(algo: Algorithm) -> dict[str, Algorithm]:
    """The objectives a config may train with ``algo`` instead of its own (``objective.name``), each with the
    row it comes from: the objectives of the policy rows on ``algo.objective_choice`` (none when it is None)."""
    if algo.objective_choice is None:
        return {}
    rows = (a for a in ROWS if a.data == algo.objective_choice and a.model == POLICY and a.objective != algo.objective)
    return {a.objective: a for a in rows}


@dataclass(frozen=True)
class Variant:
    """An open row (``objective_choice``) trained with one chosen objective, and what that pair converges to:
    ``claim`` and ``verified_by`` as in :class:`Algorithm`, ``guarantee`` "last" or "average". A pair of the
    table without a Variant claims :data:`NOT_CHECKED`; it never inherits the row's claim."""

    algorithm: str
    objective: str
    claim: str
    verified_by: str
    guarantee: str = "last"


NOT_CHECKED = "not checked"
_VARIANT_TESTS = "tests/test_testbed_iterative_objectives.py::"

VARIANTS: dict[tuple[str, str], Variant] = {
    (v.algorithm, v.objective): v
    for v in (
        Variant("online_dpo", "dpo", ALGORITHMS["online_dpo"].claim, ALGORITHMS["online_dpo"].verified_by),
        Variant(
            "online_dpo",
            "ipo",
            "β-regularised Nash equilibrium (online IPO)",
            "tests/test_testbed_nash.py::test_online_ipo_converges_to_the_regularized_nash_equilibrium_and_online_dpo_does_not",
        ),
        Variant(
            "iterative_dpo",
            "ipo",
            "round t: Hedge π_{t+1} ∝ π_t·exp(P(y ≻ π_t)/β); average iterate: minimax winner up to "
            "exploitability β·ln(1/min π_0)/T + 1/(8β)",
            _VARIANT_TESTS + "test_iterative_ipo_is_hedge_and_its_average_approaches_the_minimax_winner",
            guarantee="average",
        ),
        Variant(
            "iterative_dpo",
            "simpo",
            "a fixed point: π minimises the SimPO loss of its own pairs (cyclic game: the uniform minimax winner)",
            _VARIANT_TESTS + "test_iterative_simpo_reaches_a_fixed_point_without_a_reference",
        ),
    )
}


def variants_of(algo: Algorithm) -> list[Variant]:
    """The checked (algorithm, objective) pairs of an open row, in the order of its objective choices."""
    return [VARIANTS[(algo.name, o)] for o in objective_choices(algo) if (algo.name, o) in VARIANTS]


def with_objective(algo: Algorithm, objective: str, *, field_name: str = "objective.name") -> Algorithm:
    """``algo`` training ``objective``: the row itself for its own objective, else (a row with an
    ``objective_choice``) the row with that objective and the parameters of the objective's own row, the row's
    reference schedule unless the objective takes none (SimPO, ORPO), and the claim of its :class:`Variant`
    (:data:`NOT_CHECKED` without one). Anything else is a one-line ConfigError naming ``field_name`` that says
    what the objective trains on instead ("set algorithm: NAME" for another row on the same data schedule)."""
    if objective == algo.objective:
        return algo
    choices = objective_choices(algo)
    if objective in choices:
        source = choices[objective]
        variant = VARIANTS.get((algo.name, objective))
        return replace(
            algo,
            objective=objective,
            reference=NONE if source.reference == NONE else algo.reference,
            params=dict(source.params),
            claim=variant.claim if variant else NOT_CHECKED,
            verified_by=variant.verified_by if variant else "",
            guarantee=variant.guarantee if variant else "last",
        )
    if not choices:
        raise ConfigError(
            f"{field_name} '{objective}' contradicts algorithm '{algo.name}', whose objective is "
            f"'{algo.objective}'; drop {field_name}",
            field=field_name,
        )
    rows = [a for a in ROWS if a.objective == objective]
    if not rows:
        what = f"objective '{objective}' is no algorithm's loss ({OBJECTIVE_ONLY.get(objective, 'not in the table')})"
    elif rows[0].model == REWARD:
        what = f"objective '{objective}' trains a reward model (algorithm '{rows[0].name}')"
    else:
        r = rows[0]
        if r.data == algo.data:  # a row of its own on this schedule (iterative_dpo + sppo is SPPO)
            what = (
                f"objective '{objective}' is the loss of algorithm '{r.name}' on this schedule; set algorithm: {r.name}"
            )
        else:
            what = (
                f"objective '{objective}' is the loss of algorithm '{r.name}', which trains on "
                f"{DATA_SCHEDULES[r.data]} against {REFERENCE_SCHEDULES[r.reference]}"
            )
    raise ConfigError(
        f"algorithm '{algo.name}' trains one of the pair objectives {', '.join([algo.objective, *choices])} on "
        f"{DATA_SCHEDULES[algo.data]}; {what}",
        field=field_name,
    )
