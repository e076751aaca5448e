"""The testbed side of the algorithm table: schedule runners keyed by (data schedule, reference schedule),
and the evaluation of a run against the exact answer.

Algorithms are defined once, in :mod:`preflab.algorithms`; :data:`ALGORITHMS` here is the table's
testbed-runnable part. ``run_algorithm("inpo", game, beta=0.1)`` trains with exact expectations and returns a
:class:`Trajectory`; :func:`evaluate` measures it against the game's β-regularised Nash equilibrium (or any
target table): distance (worst-context total variation), exploitability, KL to π_ref and the first
iteration from which the tracked iterate stays within tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import algorithms as table
from ..algorithms import Algorithm, get_algorithm, with_objective
from ..errors import ConfigError
from . import pg_schedules, schedules
from .games import PreferenceGame
from .rollouts import rollouts
from .schedules import GameTrainConfig, Trajectory
from .solvers import exploitability, kl_divergence, tv_distance

__all__ = ["ALGORITHMS", "RUNNERS", "Evaluation", "evaluate", "run_algorithm"]

Runner = Callable[[Algorithm, PreferenceGame, GameTrainConfig], Trajectory]

# How the testbed implements each (data schedule, reference schedule) with exact expectations.
RUNNERS: dict[tuple[str, str], Runner] = {
    (table.OFFLINE_PAIRS, table.FIXED): schedules.offline,
    (table.OFFLINE_PAIRS, table.NONE): schedules.offline,
    (table.OFFLINE_UNPAIRED, table.FIXED): schedules.offline,
    (table.OFFLINE_RANKINGS, table.FIXED): schedules.offline,
    (table.OFFLINE_RANKINGS, table.NONE): schedules.offline,
    (table.OFFLINE_DEMONSTRATIONS, table.NONE): schedules.offline,  # SFT: maximum likelihood on μ's responses
    (table.ONLINE_PAIRS, table.FIXED): schedules.online_pairs,
    (table.ONLINE_PAIRS, table.NONE): schedules.online_pairs,  # online SimPO / ORPO (online_dpo's objective choice)
    (table.ITERATIVE, table.PREVIOUS_ITERATE): schedules.iterative,
    (table.ITERATIVE, table.NONE): schedules.iterative,  # iterative SimPO / ORPO (iterative_dpo's objective choice)
    (table.POLICY_GRADIENT, table.GEOMETRIC_MIXTURE): pg_schedules.online_pg,
    (table.POLICY_GRADIENT, table.NONE): pg_schedules.online_pg,
    (table.POLICY_GRADIENT, table.PROX_SNAPSHOTS): pg_schedules.mirror_prox,
    (table.GROUP_DUAL, table.FIXED): pg_schedules.maxmin_dual,
    (table.ROLLOUTS, table.FIXED): rollouts,
}

ALGORITHMS: dict[str, Algorithm] = {name: a for name, a in table.ALGORITHMS.items() if a.on_testbed}


def run_algorithm(
    name: str, game: PreferenceGame, beta: float = 0.1, objective: str | None = None, **overrides: Any
) -> Trajectory:
    """Train algorithm ``name`` on ``game`` with exact expectations; ``overrides`` are :class:`GameTrainConfig`
    fields (iterations, inner_steps, lr, eta, data, init, optimizer, params) over the table's defaults.
    ``objective``: another objective for a row that leaves it open (``online_dpo`` with ``"ipo"`` is online IPO;
    :func:`preflab.algorithms.with_objective`), trained on the row's schedule with that objective's reference."""
    algo = get_algorithm(name, field_name="algorithms")
    if not algo.on_testbed:
        raise ConfigError(f"algorithm '{name}' has no testbed schedule (see `preflab algorithms`)", field="algorithms")
    if objective is not None:
        algo = with_objective(algo, objective, field_name="objective")
    params = {**algo.params, **overrides.pop("params", {})}
    cfg = replace(GameTrainConfig(beta=beta), **{**algo.testbed, **overrides, "params": params})
    return RUNNERS[(algo.data, algo.reference)](algo, game, cfg)


@dataclass
class Evaluation:
    """How a run ends up against a target: ``distance`` (worst-context TV of the tracked iterate),
    ``exploitability`` at β, ``kl_ref`` (ρ-weighted KL(π‖π_ref)), ``iterations_to_tol`` (first iteration
    after which the distance stays below ``tol``; None if never) and the per-iteration curves."""

    algorithm: str
    distance: float
    exploitability: float
    kl_ref: float
    iterations_to_tol: int | None
    distances: list[float]
    exploitabilities: list[float]
    guarantee: str
    evals: int


def evaluate(traj: Trajectory, game: PreferenceGame, target: np.ndarray, beta: float, tol: float = 1e-3) -> Evaluation:
    """Measure a trajectory's tracked iterates (last or running average, per its guarantee) against ``target``."""
    seq = traj.tracked()
    dist = [tv_distance(p, target) for p in seq]
    expl = [max(exploitability(game, p, beta), 0.0) for p in seq]
    reached = None
    for k in range(len(dist) - 1, -1, -1):
        if dist[k] >= tol:
            reached = k + 1 if k + 1 < len(dist) else None
            break
    else:
        reached = 0
    final = seq[-1]
    return Evaluation(
        traj.algorithm,
        dist[-1],
        expl[-1],
        kl_divergence(final, game.ref, game.context_probs),
        reached,
        dist,
        expl,
        traj.guarantee,
        len(traj.losses),
    )
