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

Adding an algorithm: one objective (if new), one row here, one testbed test (``verified_by``), and a
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
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "DATA_SCHEDULES",
    "LM",
    "MODELS",
    "OBJECTIVE_ONLY",
    "REFERENCE_SCHEDULES",
    "NOT_CHECKED",
    "TESTBED",
    "VARIANTS",
    "Algorithm",
    "Variant",
    "get_algorithm",
    "objective_choices",
    "variants_of",
    "with_objective",
]

# Where an algorithm runs.
LM = "lm"  # the language-model trainer (preflab train)
TESTBED = "testbed"  # the exact tabular testbed (preflab testbed run)

# Data schedules: where the next batch comes from.
OFFLINE_PAIRS = "offline_pairs"
OFFLINE_UNPAIRED = "offline_unpaired"
OFFLINE_RANKINGS = "offline_rankings"
OFFLINE_DEMONSTRATIONS = "offline_demonstrations"
ONLINE_PAIRS = "online_pairs"
ITERATIVE = "iterative"
POLICY_GRADIENT = "policy_gradient"
GROUP_DUAL = "group_dual"
ROLLOUTS = "rollouts"

DATA_SCHEDULES: dict[str, str] = {
    OFFLINE_PAIRS: "a fixed dataset of preference pairs",
    OFFLINE_UNPAIRED: "a fixed dataset of single completions labelled desirable / undesirable",
    OFFLINE_RANKINGS: "a fixed dataset of rankings of several responses per prompt",
    OFFLINE_DEMONSTRATIONS: "a fixed dataset of demonstrations (a prompt and the completion to imitate)",
    ONLINE_PAIRS: "pairs sampled from the current policy and judged at every step",
    ITERATIVE: "rounds: sample from π_t, judge, then fit the round's loss",
    POLICY_GRADIENT: "samples from the policy, rewarded by a pairwise judge, policy-gradient steps",
    GROUP_DUAL: "policy-gradient steps on per-group rewards, a dual step on the group weights",
    ROLLOUTS: "G completions per prompt from the policy, scored by a judge; epochs of clipped policy-gradient steps",
}

# Reference schedules: what log π is compared with.
FIXED = "fixed"
PREVIOUS_ITERATE = "previous_iterate"
GEOMETRIC_MIXTURE = "geometric_mixture"
PROX_SNAPSHOTS = "prox_snapshots"
NONE = "none"

REFERENCE_SCHEDULES: dict[str, str] = {
    FIXED: "the initial policy π_ref, fixed for the whole run",
    PREVIOUS_ITERATE: "the previous round's policy π_t (refreshed at round boundaries)",
    GEOMETRIC_MIXTURE: "opponents drawn from π^{1−βη} π_ref^{βη}; KL to π_ref",
    PROX_SNAPSHOTS: "mirror prox: the iterate π^k and its extrapolation π^{k+½}; KL to π_ref",
    NONE: "no reference policy",
}

# What an algorithm trains.
POLICY = "policy"
REWARD = "reward"

MODELS: dict[str, str] = {
    POLICY: "the policy π(y|x): a causal LM scored by its sequence log-probs",
    REWARD: "a reward / preference model: a causal LM with a classifier head read at the last token (reward.head)",
}

# Registered objectives that are not an algorithm's loss on their own (models fitted for the loop).
OBJECTIVE_ONLY: dict[str, str] = {
    "hl_gauss": "fits a value / reward head by classification (reward.head: hl_gauss of bt_reward)",
}


@dataclass(frozen=True)
class Algorithm:
    """One row of the table.

    objective: a registered objective. data / reference: keys of :data:`DATA_SCHEDULES` /
    :data:`REFERENCE_SCHEDULES`. claim: what the paper says it converges to. verified_by: the testbed test
    that checks the claim (``path::test``). paper: short citation. runs: where it runs today (:data:`LM`,
    :data:`TESTBED`). params: objective parameters that differ from the objective's own defaults.
    testbed: defaults of the testbed's :class:`~preflab.testbeds.GameTrainConfig` (iterations, inner steps,
    η) under which it converges on the testbed's games at β ≈ 0.1. guarantee: "last" when the claim is
    about the last iterate, "average" when it is about the mixture of iterates (no-regret self-play).
    model: what it trains, a key of :data:`MODELS` (the policy, or a reward model). objective_choice: a data
    schedule whose policy rows' objectives a config may train instead of ``objective`` (``objective.name``;
    :func:`with_objective`), or None when the objective is fixed.
    """

    name: str
    objective: str
    data: str
    reference: str
    claim: str
    verified_by: str
    paper: str
    runs: frozenset[str]
    params: dict[str, Any] = field(default_factory=dict)
    testbed: dict[str, Any] = field(default_factory=dict)
    guarantee: str = "last"
    model: str = POLICY
    objective_choice: str | None = None

    @property
    def on_lm(self) -> bool:
        return LM in self.runs

    @property
    def on_testbed(self) -> bool:
        return TESTBED in self.runs


_BOTH = frozenset({LM, TESTBED})
_TB = frozenset({TESTBED})
_OFF = {"iterations": 20, "inner_steps": 5}
_NASH = "tests/test_testbed_nash.py::test_converges_to_the_regularized_nash_equilibrium"
_AVERAGE = "tests/test_testbed_nash.py::test_self_play_average_approaches_the_minimax_winner"
_OFFLINE_TESTS = "tests/test_testbed_offline.py::"
_PG = "tests/test_testbed_rollouts.py::test_each_method_reaches_the_kl_regularised_optimum"
_KL_OPT = "KL optimum π_ref·exp(r/β)/Z (k1 KL in the reward)"

_ROWS = [
    Algorithm(
        "dpo",
        "dpo",
        OFFLINE_PAIRS,
        FIXED,
        "KL optimum π_ref·exp(r/β)/Z (Bradley–Terry)",
        _OFFLINE_TESTS + "test_dpo_reaches_the_kl_regularised_optimum",
        "Rafailov et al. 2023, DPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "cdpo",
        "cdpo",
        OFFLINE_PAIRS,
        FIXED,
        "KL optimum of the ε-smoothed labels",
        _OFFLINE_TESTS + "test_cdpo_optimum_keeps_a_smoothed_margin",
        "Mitchell 2023, cDPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "rdpo",
        "rdpo",
        OFFLINE_PAIRS,
        FIXED,
        "KL optimum of the clean labels (flip rate ε)",
        _OFFLINE_TESTS + "test_rdpo_on_noisy_labels_reaches_the_clean_optimum_and_dpo_does_not",
        "Chowdhury et al. 2024, rDPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "ipo",
        "ipo",
        OFFLINE_PAIRS,
        FIXED,
        "π_ref·exp(P(y ≻ μ)/β)/Z, μ the data policy",
        _OFFLINE_TESTS + "test_ipo_reaches_its_population_solution",
        "Azar et al. 2024, IPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "hinge",
        "hinge",
        OFFLINE_PAIRS,
        FIXED,
        "implicit reward margin 1/β",
        _OFFLINE_TESTS + "test_hinge_optimum_is_the_unit_margin",
        "Zhao et al. 2023, SLiC-HF",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "rpo",
        "rpo",
        OFFLINE_PAIRS,
        FIXED,
        "DPO + SFT on the chosen response",
        _OFFLINE_TESTS + "test_sft_and_reference_free_objectives_reach_their_population_optimum",
        "Liu et al. 2024, RPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "simpo",
        "simpo",
        OFFLINE_PAIRS,
        NONE,
        "margin γ on mean log-probs",
        _OFFLINE_TESTS + "test_sft_and_reference_free_objectives_reach_their_population_optimum",
        "Meng et al. 2024, SimPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "orpo",
        "orpo",
        OFFLINE_PAIRS,
        NONE,
        "SFT + odds-ratio contrast",
        _OFFLINE_TESTS + "test_sft_and_reference_free_objectives_reach_their_population_optimum",
        "Hong et al. 2024, ORPO",
        _BOTH,
        testbed=_OFF,
    ),
    Algorithm(
        "kto",
        "kto",
        OFFLINE_UNPAIRED,
        FIXED,
        "mass on the desirable responses (P(y ≻ μ) > ½)",
        _OFFLINE_TESTS + "test_kto_moves_mass_onto_desirable_actions",
        "Ethayarajh et al. 2024, KTO",
        _BOTH,
        testbed={"iterations": 1, "inner_steps": 12},
    ),
    Algorithm(
        "pro",
        "pro",
        OFFLINE_RANKINGS,
        NONE,
        "softmax(r/β); with reference: KL optimum (Plackett–Luce)",
        _OFFLINE_TESTS + "test_pro_with_reference_reaches_the_kl_optimum_on_plackett_luce_rankings",
        "Song et al. 2024, PRO",
        _BOTH,
        testbed={"iterations": 1, "inner_steps": 40},
    ),
    Algorithm(
        "lipo",
        "lipo",
        OFFLINE_RANKINGS,
        FIXED,
        "implicit reward ranks responses like r",
        _OFFLINE_TESTS + "test_lipo_ranks_actions_like_the_true_reward",
        "Liu et al. 2024, LiPO",
        _BOTH,
        testbed={"iterations": 1, "inner_steps": 60},
    ),
    Algorithm(
        "online_dpo",
        "online_dpo",
        ONLINE_PAIRS,
        FIXED,
        "KL optimum π_ref·exp(r/β)/Z (Bradley–Terry judge)",
        _OFFLINE_TESTS + "test_dpo_reaches_the_kl_regularised_optimum",
        "Guo et al. 2024, OAIF",
        _BOTH,
        testbed={"iterations": 5, "inner_steps": 5},
        objective_choice=OFFLINE_PAIRS,  # online IPO, online SimPO, ...: objective.name picks the loss
    ),
    Algorithm(
        "xpo",
        "xpo",
        ONLINE_PAIRS,
        FIXED,
        "KL optimum + O(α)",
        _OFFLINE_TESTS + "test_xpo_bias_vanishes_with_alpha",
        "Xie et al. 2024, XPO",
        _BOTH,
        testbed={"iterations": 10, "inner_steps": 5},
    ),
    Algorithm(
        "iterative_dpo",
        "dpo",
        ITERATIVE,
        PREVIOUS_ITERATE,
        "round t: π_ref·exp(t·r/β)/Z, → argmax r",
        _OFFLINE_TESTS + "test_iterative_dpo_round_t_is_the_kl_optimum_at_beta_over_t",
        "Xiong et al. 2024, iterative DPO",
        _BOTH,
        testbed={"iterations": 3, "inner_steps": 5},
        objective_choice=OFFLINE_PAIRS,  # iterative IPO, iterative SimPO, ...: objective.name picks the round's loss
    ),
    Algorithm(
        "sppo",
        "sppo",
        ITERATIVE,
        PREVIOUS_ITERATE,
        "minimax winner (average iterate)",
        _AVERAGE,
        "Wu et al. 2024, SPPO",
        _BOTH,
        testbed={"iterations": 150, "inner_steps": 3, "eta": 1.0},
        guarantee="average",
    ),
    Algorithm(
        "inpo",
        "inpo",
        ITERATIVE,
        PREVIOUS_ITERATE,
        "β-regularised Nash equilibrium",
        _NASH,
        "Zhang et al. 2024, INPO",
        _BOTH,
        testbed={"iterations": 150, "inner_steps": 4, "eta": 1.0},
    ),
    Algorithm(
        "dno",
        "dno",
        ITERATIVE,
        PREVIOUS_ITERATE,
        "minimax winner (average iterate)",
        _AVERAGE,
        "Rosset et al. 2024, DNO",
        _BOTH,
        testbed={"iterations": 150, "inner_steps": 3, "eta": 1.0},
        guarantee="average",
    ),
    Algorithm(
        "nash_md",
        "nash_md",
        POLICY_GRADIENT,
        GEOMETRIC_MIXTURE,
        "β-regularised Nash + O(η/β)",
        _NASH,
        "Munos et al. 2023, Nash-MD",
        _BOTH,
        testbed={"iterations": 150, "inner_steps": 10, "eta": 0.01},
    ),
    Algorithm(
        "nash_mp",
        "nash_mp",
        POLICY_GRADIENT,
        PROX_SNAPSHOTS,
        "β-regularised Nash equilibrium",
        _NASH,
        "Tiapkin et al. 2025, Nash-MP",
        _BOTH,
        testbed={"iterations": 40, "inner_steps": 2, "eta": 5.0},
    ),
    Algorithm(
        "spo",
        "spo",
        POLICY_GRADIENT,
        NONE,
        "minimax winner (average iterate; β > 0: reg. Nash)",
        _AVERAGE,
        "Swamy et al. 2024, SPO",
        _BOTH,
        testbed={"iterations": 150, "inner_steps": 10},
        guarantee="average",
    ),
    Algorithm(
        "bt_reward",
        "bt_reward",
        OFFLINE_PAIRS,
        NONE,
        "r − r* constant per prompt (Bradley–Terry data)",
        "tests/test_testbed_models.py::test_bt_reward_recovers_bradley_terry_rewards_up_to_a_shift",
        "Bradley & Terry 1952; Ouyang et al. 2022",
        frozenset({LM}),
        model=REWARD,
    ),
    Algorithm(
        "gpm",
        "gpm",
        OFFLINE_PAIRS,
        NONE,
        "any skew-symmetric preference, cycles included",
        "tests/test_testbed_models.py::test_gpm_represents_the_cycle_exactly",
        "Zhang et al. 2024, General Preference Model",
        frozenset({LM}),
        model=REWARD,
    ),
    Algorithm(
        "maxmin_em",
        "maxmin_em",
        OFFLINE_PAIRS,
        NONE,
        "one Bradley–Terry reward per annotator group (EM)",
        "tests/test_testbed_groups.py::test_em_recovers_the_groups_and_the_maxmin_policy",
        "Chakraborty et al. 2024, MaxMin-RLHF",
        frozenset({LM}),
        model=REWARD,
    ),
    Algorithm(
        "maxmin",
        "maxmin",
        GROUP_DUAL,
        FIXED,
        "max-min policy over user groups",
        "tests/test_testbed_groups.py::test_maxmin_converges_to_the_maxmin_policy",
        "Chakraborty et al. 2024, MaxMin-RLHF",
        _TB,
        testbed={"iterations": 300, "inner_steps": 1},
    ),
    Algorithm(
        "sft",
        "sft",
        OFFLINE_DEMONSTRATIONS,
        NONE,
        "the demonstrations' policy (maximum likelihood)",
        _OFFLINE_TESTS + "test_sft_reaches_the_demonstrations_policy",
        "Ouyang et al. 2022, SFT; Laskin et al. 2022, algorithm distillation",
        _BOTH,
        testbed={"iterations": 1, "inner_steps": 50},
    ),
    # policy-gradient RLHF on rollouts (preflab.objectives.policy_gradient, training.rollouts)
    Algorithm(
        "ppo",
        "ppo",
        ROLLOUTS,
        FIXED,
        _KL_OPT,
        _PG,
        "Schulman et al. 2017; Ouyang et al. 2022, PPO",
        _BOTH,
        testbed={"iterations": 60, "inner_steps": 2},
    ),
    Algorithm(
        "rloo",
        "rloo",
        ROLLOUTS,
        FIXED,
        _KL_OPT,
        _PG,
        "Ahmadian et al. 2024, RLOO",
        _BOTH,
        testbed={"iterations": 60, "inner_steps": 2},
    ),
    Algorithm(
        "reinforce_pp",
        "reinforce_pp",
        ROLLOUTS,
        FIXED,
        _KL_OPT,
        _PG,
        "Hu 2025, REINFORCE++",
        _BOTH,
        testbed={"iterations": 400, "inner_steps": 2, "lr": 0.01},
    ),
    Algorithm(
        "remax",
        "remax",
        ROLLOUTS,
        FIXED,
        _KL_OPT,
        _PG,
        "Li et al. 2024, ReMax",
        _BOTH,
        testbed={"iterations": 60, "inner_steps": 2},
    ),
    Algorithm(
        "grpo",
        "grpo",
        ROLLOUTS,
        FIXED,
        "k1 in the reward or Dr. GRPO + k2 in the loss: KL optimum; paper form (k3, std): another point",
        _PG,
        "Shao et al. 2024, GRPO",
        _BOTH,
        testbed={"iterations": 1000, "inner_steps": 1, "lr": 0.01},
    ),
]

ALGORITHMS: dict[str, Algorithm] = {row.name: row for row in _ROWS}
if len(ALGORITHMS) != len(_ROWS):  # pragma: no cover - a duplicated row is a bug in this file
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
    rows = (a for a in _ROWS if a.data == algo.objective_choice and a.model == POLICY and a.objective != algo.objective)
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
    rows = [a for a in _ROWS if a.objective == objective]
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
