"""What a row of the algorithm table (:mod:`preflab.algorithms`) says: the :class:`Algorithm` dataclass and the
names it is written in, where an algorithm runs (:data:`LM`, :data:`TESTBED`), its data schedule
(:data:`DATA_SCHEDULES`), its reference schedule (:data:`REFERENCE_SCHEDULES`) and the model it trains
(:data:`MODELS`). The rows themselves are in :mod:`preflab.algorithm_table`; look-ups, open rows and their
variants in :mod:`preflab.algorithms`, which re-exports all of these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
