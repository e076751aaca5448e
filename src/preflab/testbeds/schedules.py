"""Training schedules on a preference game with exact expectations: offline, iterative (reference = previous
iterate) and online pairs, with the run's config (:class:`GameTrainConfig`) and result (:class:`Trajectory`)
that every schedule shares. The policy-gradient schedules (online policy gradient, mirror prox, the max-min
dual) are in :mod:`.pg_schedules`, the rollout schedule (PPO, GRPO …) in :mod:`.rollouts`.

An algorithm = data schedule × registered objective × reference schedule (:mod:`preflab.algorithms`). Each
runner takes the algorithm's table row, a game and a :class:`GameTrainConfig`, calls the row's registered
objective through :func:`preflab.objectives.get_objective` on exact-expectation inputs (:mod:`.expectations`),
and returns a :class:`Trajectory` of tabular policies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from .. import algorithms as table
from ..algorithms import Algorithm
from ..errors import ConfigError, TrainingError
from ..objectives import get_objective
from .expectations import (
    PairTable,
    distinct_pair_mass,
    exact_demonstrations,
    exact_rankings,
    exact_unpaired,
    exact_xpo_pairs,
    t,
    win_rates,
)
from .games import PreferenceGame
from .policy import TablePolicy, fit

__all__ = [
    "GameTrainConfig",
    "Trajectory",
    "iterative",
    "make_objective_params",
    "offline",
    "online_pairs",
    "start_policy",
]


@dataclass
class GameTrainConfig:
    """How to train on a game. beta: the game's KL(π‖π_ref) regularisation (the objectives' β or τ).
    iterations: outer iterations (iterative, mirror prox, dual) or gradient steps (online policy gradient).
    inner_steps: optimiser steps per iteration. lr: step size (None = the runner's default). eta: the
    mirror-descent / proximal step size of Nash-style methods. data: the offline pairs' sampling policy μ,
    "ref" (π_ref) or "uniform". init: the initial policy, "ref" or an explicit (X, K) table. params: extra
    hyperparameters for the objective's dataclass."""

    beta: float = 0.1
    iterations: int = 50
    inner_steps: int = 30
    lr: float | None = None
    eta: float | None = None
    data: str = "ref"
    init: Any = "ref"
    optimizer: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    """The iterates of one run. ``policies[0]`` is the initial policy. ``guarantee`` is "last" when the
    method's claim is about the last iterate, "average" when it is about the mixture of the iterates
    (no-regret self-play: SPPO, DNO, SPO); :attr:`final` picks accordingly."""

    algorithm: str
    policies: list[np.ndarray]
    guarantee: str = "last"
    losses: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def average(self) -> np.ndarray:
        return np.mean(self.policies[1:] or self.policies, axis=0)

    def averages(self) -> list[np.ndarray]:
        """The running mixture of iterates after each iteration (the initial policy at index 0)."""
        csum = np.cumsum(np.stack(self.policies[1:]), axis=0) if len(self.policies) > 1 else np.empty((0,))
        return [self.policies[0]] + [csum[k] / (k + 1) for k in range(len(csum))]

    @property
    def final(self) -> np.ndarray:
        return self.average if self.guarantee == "average" else self.policies[-1]

    def tracked(self) -> list[np.ndarray]:
        """The sequence the guarantee is about: iterates or their running average."""
        return self.averages() if self.guarantee == "average" else self.policies


def start_policy(game: PreferenceGame, cfg: GameTrainConfig) -> TablePolicy:
    """The run's initial policy: π_ref (``init="ref"``) or the given (X, K) table."""
    return TablePolicy(game.ref if isinstance(cfg.init, str) and cfg.init == "ref" else np.asarray(cfg.init))


def make_objective_params(name: str, cfg: GameTrainConfig, **defaults: Any):
    """Objective ``name``'s parameters: the schedule's ``defaults``, overridden by ``cfg.params``."""
    return get_objective(name).make_params(**{**defaults, **cfg.params})


def _data_policy(game: PreferenceGame, cfg: GameTrainConfig) -> np.ndarray:
    if cfg.data == "ref":
        return game.ref
    if cfg.data == "uniform":
        return np.full_like(game.ref, 1.0 / game.n_actions)
    raise ConfigError(f"unknown data policy '{cfg.data}' (known: ref, uniform)", field="data")


COLLAPSED = 1e-12  # below this chance of drawing two distinct responses, a policy counts as pure


def offline(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """A fixed dataset drawn from μ, as a population loss with reference π_ref: every pair labelled by the
    annotators (pair objectives), every response labelled desirable with probability P(y ≻ μ) (unpaired:
    KTO), every response of μ as a demonstration (SFT), or every ranking of the responses from Plackett–Luce
    on the game's rewards (listwise: PRO, LiPO).
    Each iteration is ``inner_steps`` optimiser steps; records the policy after each."""
    spec = get_objective(algo.objective)
    defaults = {"beta": cfg.beta} if "beta" in spec.params.__dataclass_fields__ else {}
    params = make_objective_params(algo.objective, cfg, **defaults)
    inputs = _offline_inputs(algo, spec.inputs, game, cfg)
    pol = start_policy(game, cfg)
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    for _ in range(cfg.iterations):
        traj.losses += fit(
            pol,
            lambda lp: spec(inputs(lp), params)[0],
            optimizer=cfg.optimizer or "lbfgs",
            steps=cfg.inner_steps,
            lr=cfg.lr,
        )
        traj.policies.append(pol.probs())
    return traj


def _offline_inputs(
    algo: Algorithm, input_kind: str, game: PreferenceGame, cfg: GameTrainConfig
) -> Callable[[Tensor], Any]:
    """log π → the objective's exact inputs over the whole dataset of ``algo``'s data schedule."""
    ref, mu, rho = t(np.log(game.ref)), _data_policy(game, cfg), game.context_probs
    wanted = {
        table.OFFLINE_PAIRS: "pair",
        table.OFFLINE_UNPAIRED: "unpaired",
        table.OFFLINE_RANKINGS: "ranking",
        table.OFFLINE_DEMONSTRATIONS: "demonstration",
    }
    if wanted.get(algo.data) != input_kind:
        raise ConfigError(
            f"objective '{algo.objective}' consumes '{input_kind}' inputs, not {algo.data}", field="algorithm"
        )
    if input_kind == "pair":
        return PairTable(mu, rho, game.annotator_pref(), ref=ref, lengths=game.lengths)
    if input_kind == "demonstration":  # supervised fine-tuning: imitate μ's responses (no labels, no reference)
        return lambda lp: exact_demonstrations(lp, mu, rho, game.lengths)
    if input_kind == "unpaired":
        desirable = win_rates(game.annotator_pref(), mu)
        return lambda lp: exact_unpaired(lp, ref, mu, rho, desirable)
    if game.rewards is None:
        raise ConfigError(f"game '{game.name}' has no rewards to rank responses by (Plackett–Luce)", field="game")
    lengths = np.ones_like(game.ref) if game.lengths is None else game.lengths
    return lambda lp: exact_rankings(lp, ref, game.rewards, rho, lengths=lengths)


def _check_support(algo: Algorithm, pi_t: np.ndarray, rho: np.ndarray, iteration: int) -> None:
    """Pairs of distinct responses drawn from π_t exist in every context: a policy that collapsed to a pure
    strategy gives an on-policy pair schedule nothing to learn from (and its pair weights divide by 0)."""
    mass = distinct_pair_mass(pi_t).numpy()
    collapsed = np.flatnonzero((mass < COLLAPSED) & (np.asarray(rho) > 0))
    if collapsed.size:
        x = int(collapsed[0])
        own = table.ALGORITHMS[algo.name].objective if algo.name in table.ALGORITHMS else algo.objective
        label = algo.name if algo.objective == own else f"{algo.name} with objective {algo.objective}"
        raise TrainingError(
            f"{label}: the policy collapsed to a pure strategy at iteration {iteration} (context {x}, "
            f"action {int(np.argmax(pi_t[x]))}): no distinct pairs to sample (1 − Σπ² = {mass[x]:.3g})",
            field="policy",
        )


def iterative(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """Iterative self-play: at iteration t the pairs come from π_t, the reference schedule is π_t, and the
    objective is minimised to convergence. ``sppo`` (η = 1/β_SPPO = ``eta``), ``inpo`` (τ = beta, η = eta),
    ``dno`` (η = 1/eta), or any pair objective (iterative DPO, IPO …: π_t as the reference; SimPO and ORPO,
    iterative DPO's reference-free objective choices, take none and read the game's lengths)."""
    name = algo.objective
    spec = get_objective(name)
    eta = 1.0 if cfg.eta is None else cfg.eta
    log_ref = t(np.log(game.ref))
    pref = t(game.annotator_pref())
    pol = start_policy(game, cfg)
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    if name == "sppo":
        params = make_objective_params(name, cfg, beta=1.0 / eta)
    elif name == "inpo":
        params = make_objective_params(name, cfg, beta=cfg.beta, eta=eta)
    elif name == "dno":
        params = make_objective_params(name, cfg, eta=1.0 / eta)
    else:
        params = make_objective_params(name, cfg, beta=cfg.beta)
    for k in range(cfg.iterations):
        if name != "sppo":  # SPPO's i.i.d. pairs keep identical ones; the others need distinct pairs
            _check_support(algo, pol.probs(), game.context_probs, k + 1)
        loss_fn = _iterative_loss(name, spec, params, pol.probs(), game, pref, log_ref, algo.reference != table.NONE)
        traj.losses += fit(pol, loss_fn, optimizer=cfg.optimizer or "lbfgs", steps=cfg.inner_steps, lr=cfg.lr)
        traj.policies.append(pol.probs())
    return traj


def _iterative_loss(
    name: str,
    spec: Any,
    params: Any,
    pi_t: np.ndarray,
    game: PreferenceGame,
    pref: Tensor,
    log_ref: Tensor,
    reference: bool = True,
) -> Callable[[Tensor], Tensor]:
    """The population loss of iteration t: pairs from π_t, π_t as the anchor / reference."""
    anchor = t(np.log(pi_t))
    win = win_rates(pref, pi_t)
    if name == "sppo":  # SPPO's reference is π_t; win rates instead of labels
        table = PairTable(pi_t, game.context_probs, None, ref=anchor, distinct=False)
        return lambda lp: spec(table.iterative(lp, anchor, win), params)[0]
    if name == "inpo":  # labelled pairs; reference π_ref, anchor π_t
        table = PairTable(pi_t, game.context_probs, pref, ref=log_ref)
        return lambda lp: spec(table.iterative(lp, anchor), params)[0]
    if name == "dno":  # soft targets from win rates against π_t
        table = PairTable(pi_t, game.context_probs, None)
        return lambda lp: spec(table.iterative(lp, anchor, win), params)[0]
    # iterative DPO-style: π_t as reference (none for SimPO / ORPO, which read the lengths instead)
    table = PairTable(pi_t, game.context_probs, pref, ref=anchor if reference else None, lengths=game.lengths)
    return lambda lp: spec(table(lp), params)[0]


def online_pairs(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """Online DPO / XPO, batched: at each iteration fresh pairs from the current policy (XPO: one response
    from π, one from π_ref, plus exploration samples from π_ref) are judged by the annotators and the
    objective is minimised with the reference fixed at π_ref (online IPO, SimPO … through ``online_dpo``'s
    objective choice: that objective, with its own reference, none for SimPO and ORPO). A policy that
    collapses to a pure strategy stops the run with a :class:`TrainingError` saying so (there are no distinct
    pairs left to sample)."""
    name = algo.objective
    spec = get_objective(name)
    params = make_objective_params(name, cfg, beta=cfg.beta)
    log_ref = t(np.log(game.ref))
    pref = t(game.annotator_pref())
    pol = start_policy(game, cfg)
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    for k in range(cfg.iterations):
        if name != "xpo":  # XPO pairs a response of π with one of π_ref: distinct while π_ref has full support
            _check_support(algo, pol.probs(), game.context_probs, k + 1)
        loss_fn = _online_pair_loss(name, spec, params, pol.probs(), game, pref, log_ref)
        traj.losses += fit(pol, loss_fn, optimizer=cfg.optimizer or "lbfgs", steps=cfg.inner_steps, lr=cfg.lr)
        traj.policies.append(pol.probs())
    return traj


def _online_pair_loss(
    name: str, spec: Any, params: Any, pi_t: np.ndarray, game: PreferenceGame, pref: Tensor, log_ref: Tensor
) -> Callable[[Tensor], Tensor]:
    if name == "xpo":
        return lambda lp: spec(exact_xpo_pairs(lp, log_ref, pi_t, game.context_probs, pref), params)[0]
    table = PairTable(pi_t, game.context_probs, pref, ref=log_ref, lengths=game.lengths)  # lengths: SimPO, ORPO
    return lambda lp: spec(table(lp), params)[0]
