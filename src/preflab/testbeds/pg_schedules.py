"""Policy-gradient schedules on a preference game with exact expectations: online policy gradient against a
geometric-mixture opponent (Nash-MD, Munos et al. 2023) or against itself (SPO, Swamy et al. 2024), Nash mirror
prox (Nash-MP, Tiapkin et al. 2025), and MaxMin-RLHF's max-min schedule with a dual step on the group weights
(Chakraborty et al. 2024). Each runner takes the algorithm's table row, a game and a
:class:`~.schedules.GameTrainConfig` and returns a :class:`~.schedules.Trajectory`, like the offline and pair
schedules of :mod:`.schedules`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import algorithms as table
from ..algorithms import Algorithm
from ..errors import ConfigError
from ..objectives import get_objective
from .expectations import exact_group_samples, exact_samples, t, win_rates
from .games import PreferenceGame
from .policy import fit
from .schedules import GameTrainConfig, Trajectory, make_objective_params, start_policy

__all__ = ["maxmin_dual", "mirror_prox", "online_pg"]


def _mixture(logp: Tensor, log_ref: Tensor, weight: float) -> Tensor:
    """The geometric mixture π^{1−w} π_ref^w, normalised (Munos et al. 2023, eq. 9)."""
    return torch.softmax((1 - weight) * logp + weight * log_ref, dim=-1)


def online_pg(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """Online policy gradient, one exact gradient step per iteration. Reference schedule
    ``geometric_mixture`` (Nash-MD): the opponent is π^{1−ηβ} π_ref^{ηβ} (``eta`` default 0.01); ``none``
    (SPO): the opponent is π itself (the reward of y is its win rate against the policy's own samples), and
    the guarantee is the table's (the average iterate) unless the objective adds a KL penalty (``beta`` > 0:
    the last iterate)."""
    name = algo.objective
    spec = get_objective(name)
    log_ref = t(np.log(game.ref))
    pref = t(game.annotator_pref())
    pol = start_policy(game, cfg)
    if algo.reference == table.GEOMETRIC_MIXTURE:
        params = make_objective_params(name, cfg, beta=cfg.beta)
        mix = cfg.beta * (0.01 if cfg.eta is None else cfg.eta)
    else:
        params = make_objective_params(name, cfg)
        mix = 0.0
    regularised = getattr(params, "beta", 0.0) > 0.0
    traj = Trajectory(algo.name, [pol.probs()], guarantee="last" if regularised else algo.guarantee)
    lr = (1.0 if cfg.lr is None else cfg.lr) * game.n_contexts

    def loss_fn(lp: Tensor) -> Tensor:
        opponent = _mixture(lp.detach(), log_ref, mix)
        inputs = exact_samples(lp, win_rates(pref, opponent), game.context_probs, ref=log_ref)
        return spec(inputs, params)[0]

    for _ in range(cfg.iterations):
        traj.losses += fit(pol, loss_fn, optimizer=cfg.optimizer or "sgd", steps=cfg.inner_steps, lr=lr, tol=0.0)
        traj.policies.append(pol.probs())
    return traj


def mirror_prox(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """Nash-MP: per iteration k, an extrapolation step against π^k, then an update step from π^k against
    π^{k+½}; each step maximises P(π ≻ opponent) − β KL(π‖π_ref) − (1/η) KL(π‖π^k) with ``inner_steps``
    exact policy-gradient steps of the ``nash_mp`` objective."""
    name = algo.objective
    spec = get_objective(name)
    eta = 1.0 if cfg.eta is None else cfg.eta
    params = make_objective_params(name, cfg, beta=cfg.beta, eta=eta)
    log_ref = t(np.log(game.ref))
    pref = t(game.annotator_pref())
    pol = start_policy(game, cfg)
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    lr = (1.0 if cfg.lr is None else cfg.lr) / (cfg.beta + 1.0 / eta)

    def prox_step(start: np.ndarray, anchor: Tensor, opponent: np.ndarray) -> np.ndarray:
        reward = win_rates(pref, opponent)
        pol.set_probs(start)

        def fn(lp: Tensor) -> Tensor:
            return spec(exact_samples(lp, reward, game.context_probs, ref=log_ref, anchor=anchor), params)[0]

        optimizer = cfg.optimizer or "npg"
        step = lr if optimizer == "npg" else lr * game.n_contexts
        traj.losses.extend(
            fit(
                pol,
                fn,
                optimizer=optimizer,
                steps=cfg.inner_steps,
                lr=step,
                tol=1e-13,
                context_probs=game.context_probs,
            )
        )
        return pol.probs()

    for _ in range(cfg.iterations):
        pi_k = pol.probs()
        anchor = t(np.log(pi_k))
        half = prox_step(pi_k, anchor, pi_k)
        prox_step(pi_k, anchor, half)
        traj.policies.append(pol.probs())
    return traj


def _group_loss(
    lp: Tensor, *, spec: Any, params: Any, game: PreferenceGame, log_ref: Tensor, lam: Tensor | None
) -> Tensor:
    return spec(exact_group_samples(lp, log_ref, game.group_rewards, game.context_probs, lam), params)[0]


def maxmin_dual(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """MaxMin-RLHF with a dual schedule. Each iteration takes ``inner_steps`` natural-policy-gradient steps
    (step 1/β by default: one step is the exact best response π_λ ∝ π_ref exp(Σ λ_k r_k/β)) of the
    ``maxmin`` objective for the current group weights λ, then a multiplicative-weights (mirror-descent)
    step on the convex dual, λ_k ∝ λ_k exp(−η (V_k(π) − mean V)), moving weight to the worst-off groups;
    ``eta`` defaults to 4β / (reward range)², the inverse smoothness of the dual (Var(r) ≤ range²/4).
    ``params={"paper": True}``
    instead lets the objective pick the lowest-value group at every step (Algorithm 1: a subgradient method
    that oscillates at the kink between groups)."""
    if game.group_rewards is None:
        raise ConfigError(f"game '{game.name}' has no user groups", field="game")
    spec = get_objective(algo.objective)
    extra = dict(cfg.params)
    paper = bool(extra.pop("paper", False))
    params = spec.make_params(**{"beta": cfg.beta, **extra})
    spread = float(np.ptp(game.group_rewards)) or 1.0
    eta = 4 * cfg.beta / spread**2 if cfg.eta is None else cfg.eta
    log_ref = t(np.log(game.ref))
    pol = start_policy(game, cfg)
    lam = None if paper else torch.full((game.n_groups,), 1.0 / game.n_groups, dtype=torch.float64)
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    optimizer = cfg.optimizer or "npg"
    lr = (1.0 if cfg.lr is None else cfg.lr) / cfg.beta * (1.0 if optimizer == "npg" else game.n_contexts)
    values: list[np.ndarray] = []
    for _ in range(cfg.iterations):
        fn = partial(_group_loss, spec=spec, params=params, game=game, log_ref=log_ref, lam=lam)
        traj.losses += fit(
            pol,
            fn,
            optimizer=optimizer,
            steps=cfg.inner_steps,
            lr=lr,
            tol=1e-13,
            context_probs=game.context_probs,
        )
        traj.policies.append(pol.probs())
        v = np.einsum("x,gxk,xk->g", game.context_probs, game.group_rewards, traj.policies[-1])
        values.append(v)
        if lam is not None:
            lam = lam * torch.exp(-eta * torch.as_tensor(v - v.mean()))
            lam = lam / lam.sum()
    traj.extra.update(group_values=values, group_weights=None if lam is None else lam.numpy())
    return traj
