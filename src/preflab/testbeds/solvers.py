"""Exact solutions of preference games, accurate to ~1e-10: what each objective should converge to.

- :func:`kl_optimum` — the KL-regularised optimum π*(y|x) ∝ π_ref(y|x) exp(r(x, y)/β) (DPO, RLHF).
- :func:`ipo_optimum` — ΨPO with Ψ = identity (Azar et al. 2024, eq. 10): π* ∝ π_ref exp(P(y ≻ μ)/τ), μ the
  policy that drew the pairs.
- :func:`regularized_nash` — the unique, symmetric Nash equilibrium of the β-regularised preference game
  max_π min_π' P(π ≻ π') − β KL(π‖π_ref) + β KL(π'‖π_ref) (Munos et al. 2023, NLHF): the fixed point
  β log(π/π_ref) = P(· ≻ π) + c, solved by mirror-prox iterations then Newton's method.
- :func:`exploitability` — how much a best response gains against a policy (0 exactly at the equilibrium).
- :func:`minimax_winner` — the von Neumann winner at β = 0 by linear programming (Swamy et al. 2024).
- :func:`maxmin_policy` — argmax_π min_k E_π[r_k] − β KL(π‖π_ref) over user groups (Chakraborty et al.
  2024), through its convex dual min_{λ ∈ Δ} β Σ_x ρ(x) log Σ_y π_ref exp(Σ_k λ_k r_k / β).

Policies are (X, K) numpy tables; contexts are weighted by the game's ρ(x).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog, minimize
from scipy.special import log_softmax, logsumexp, softmax

from ..errors import ConfigError
from .games import PreferenceGame

__all__ = [
    "best_response_value",
    "duality_gap",
    "exploitability",
    "group_values",
    "ipo_optimum",
    "kl_divergence",
    "kl_optimum",
    "maxmin_policy",
    "minimax_winner",
    "regularized_nash",
    "tv_distance",
]


def _check_beta(beta: float, allow_zero: bool = False) -> None:
    if not (beta > 0 or (allow_zero and beta == 0)) or not np.isfinite(beta):
        raise ConfigError(f"beta must be {'≥' if allow_zero else '>'} 0, got {beta}", field="beta")


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Worst-context total variation max_x ½ Σ_y |p(y|x) − q(y|x)|."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(-1).max())


def kl_divergence(p: np.ndarray, q: np.ndarray, context_probs: np.ndarray | None = None) -> float:
    """Σ_x ρ(x) KL(p(·|x) ‖ q(·|x)) (ρ uniform when omitted)."""
    p, q = np.atleast_2d(p), np.atleast_2d(q)
    rho = np.full(p.shape[0], 1.0 / p.shape[0]) if context_probs is None else context_probs
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0)
    return float(rho @ terms.sum(-1))


def kl_optimum(game: PreferenceGame, beta: float, rewards: np.ndarray | None = None) -> np.ndarray:
    """π*(y|x) ∝ π_ref(y|x) exp(r(x, y)/β): the maximiser of E_π[r] − β KL(π‖π_ref) (Rafailov et al. 2023,
    eq. 4). ``rewards`` default to the game's Bradley–Terry rewards."""
    _check_beta(beta)
    r = game.rewards if rewards is None else np.asarray(rewards, dtype=np.float64)
    if r is None:
        raise ConfigError(f"game '{game.name}' is not Bradley–Terry: pass rewards", field="rewards")
    return softmax(np.log(game.ref) + r / beta, axis=-1)


def ipo_optimum(
    game: PreferenceGame, beta: float, mu: np.ndarray | None = None, pref: np.ndarray | None = None
) -> np.ndarray:
    """IPO's population solution (Azar et al. 2024, Prop. 3 / eq. 10 with Ψ = identity, τ = β):
    π*(y) ∝ π_ref(y) exp(P(y ≻ μ)/τ), pairs drawn from μ (default π_ref); ``pref`` defaults to the true P."""
    _check_beta(beta)
    mu = game.ref if mu is None else mu
    P = game.pref if pref is None else pref
    win = np.einsum("xij,xj->xi", P, mu)
    return softmax(np.log(game.ref) + win / beta, axis=-1)


def _nash_context(P: np.ndarray, log_ref: np.ndarray, beta: float, tol: float) -> np.ndarray:
    """Regularised Nash in one context: mirror prox until the residual is small, then Newton on
    F(u, c) = β(u − log π_ref) − P e^u − c = 0, Σ e^u = 1 (quadratic convergence)."""
    K = log_ref.shape[0]
    u = log_ref.copy()
    eta = 1.0 / (1.0 + beta)

    def residual(u: np.ndarray) -> float:
        r = beta * (u - log_ref) - P @ np.exp(u)
        return float(np.abs(r - r.mean()).max())

    for _ in range(100_000):  # mirror prox (Nemirovski 2004) with the KL prox, fixed reference
        half = log_softmax((log_ref * eta * beta + u + eta * (P @ np.exp(u))) / (1 + eta * beta))
        u = log_softmax((log_ref * eta * beta + u + eta * (P @ np.exp(half))) / (1 + eta * beta))
        if residual(u) < 1e-6:
            break
    c = float((beta * (u - log_ref) - P @ np.exp(u)).mean())
    J = np.zeros((K + 1, K + 1))
    J[:K, K] = -1.0
    for _ in range(50):
        pi = np.exp(u)
        F = np.concatenate([beta * (u - log_ref) - P @ pi - c, [pi.sum() - 1.0]])
        J[:K, :K] = beta * np.eye(K) - P * pi[None, :]
        J[K, :K] = pi
        step = np.linalg.solve(J, F)
        u, c = u - step[:K], c - step[K]
        if np.abs(F).max() < tol:
            break
    if residual(u) > 1e-9:  # pragma: no cover - Newton from a mirror-prox start converges quadratically
        raise RuntimeError(f"regularised Nash solver did not converge (residual {residual(u):.2e}, beta={beta})")
    return np.exp(u)


def regularized_nash(
    game: PreferenceGame, beta: float, *, pref: np.ndarray | None = None, tol: float = 1e-13
) -> np.ndarray:
    """The β-regularised Nash equilibrium (X, K) of max_π min_π' P(π ≻ π') − β KL(π‖π_ref) + β KL(π'‖π_ref)
    (Munos et al. 2023, "Nash Learning from Human Feedback", Prop. 1: unique and symmetric). It solves
    π(y) ∝ π_ref(y) exp(P(y ≻ π)/β). ``pref`` defaults to the true P (pass the annotated one to get the
    equilibrium of what annotators say)."""
    _check_beta(beta)
    P = game.pref if pref is None else pref
    log_ref = np.log(game.ref)
    return np.stack([_nash_context(P[x], log_ref[x], beta, tol) for x in range(game.n_contexts)])


def best_response_value(
    game: PreferenceGame, policy: np.ndarray, beta: float, pref: np.ndarray | None = None
) -> np.ndarray:
    """(X,) max_π' P(π' ≻ π) − β KL(π'‖π_ref) per context: β log Σ_y π_ref(y) exp(P(y ≻ π)/β), or
    max_y P(y ≻ π) at β = 0."""
    _check_beta(beta, allow_zero=True)
    P = game.pref if pref is None else pref
    win = np.einsum("xij,xj->xi", P, np.asarray(policy, dtype=np.float64))
    if beta == 0:
        return win.max(-1)
    return beta * logsumexp(np.log(game.ref) + win / beta, axis=-1)


def exploitability(game: PreferenceGame, policy: np.ndarray, beta: float, pref: np.ndarray | None = None) -> float:
    """Σ_x ρ(x) [max_π' f(π', π) − f(π, π)] with f(π', π) = P(π' ≻ π) − β KL(π'‖π_ref) + β KL(π‖π_ref) and
    f(π, π) = ½: what a best-responding opponent gains over a tie. ≥ 0, and 0 only at the regularised Nash
    equilibrium (at β = 0: at a minimax winner). Half the duality gap of the symmetric profile (π, π)."""
    policy = np.asarray(policy, dtype=np.float64)
    br = best_response_value(game, policy, beta, pref)
    if beta > 0:
        log_ratio = np.log(np.clip(policy, 1e-300, None)) - np.log(game.ref)
        br = br + beta * np.where(policy > 0, policy * log_ratio, 0.0).sum(-1)
    return float(game.context_probs @ (br - 0.5))


def duality_gap(game: PreferenceGame, policy: np.ndarray, beta: float, pref: np.ndarray | None = None) -> float:
    """max_π' f(π', π) − min_π' f(π, π') = 2 · :func:`exploitability` (the game is symmetric)."""
    return 2.0 * exploitability(game, policy, beta, pref)


def minimax_winner(game: PreferenceGame, pref: np.ndarray | None = None) -> np.ndarray:
    """The von Neumann (minimax) winner per context, β = 0: argmax_π min_y' P(π ≻ y') by linear programming
    (scipy HiGHS): max v s.t. Σ_y π(y) P(y ≻ y') ≥ v for all y', π ∈ Δ. Its value is ½. Where the winner
    is not unique, HiGHS returns a vertex of the optimal face."""
    P = game.pref if pref is None else pref
    X, K, _ = P.shape
    out = np.empty((X, K))
    c = np.zeros(K + 1)
    c[-1] = -1.0  # maximise v
    A_ub = np.zeros((K, K + 1))
    A_ub[:, -1] = 1.0
    A_eq = np.concatenate([np.ones((1, K)), np.zeros((1, 1))], axis=1)
    bounds = [(0.0, None)] * K + [(None, None)]
    for x in range(X):
        A_ub[:, :K] = -P[x].T  # v − Σ_y π(y) P(y ≻ y') ≤ 0
        res = linprog(c, A_ub=A_ub, b_ub=np.zeros(K), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
        if not res.success:  # pragma: no cover - a finite LP over the simplex always has a solution
            raise RuntimeError(f"linprog failed in context {x}: {res.message}")
        pi = np.clip(res.x[:K], 0.0, None)
        out[x] = pi / pi.sum()
    return out


def group_values(game: PreferenceGame, policy: np.ndarray) -> np.ndarray:
    """(G,) expected reward of each user group, E_{x∼ρ, y∼π}[r_g(x, y)]."""
    if game.group_rewards is None:
        raise ConfigError(f"game '{game.name}' has no user groups", field="group_rewards")
    return np.einsum("x,gxk,xk->g", game.context_probs, game.group_rewards, policy)


def _dual(game: PreferenceGame, lam: np.ndarray, beta: float) -> tuple[float, np.ndarray, np.ndarray]:
    """D(λ), ∇D(λ) = group values of π_λ, and π_λ ∝ π_ref exp(Σ_k λ_k r_k / β)."""
    logits = np.log(game.ref) + np.einsum("g,gxk->xk", lam, game.group_rewards) / beta
    value = float(game.context_probs @ (beta * logsumexp(logits, axis=-1)))
    pi = softmax(logits, axis=-1)
    return value, group_values(game, pi), pi


def maxmin_policy(game: PreferenceGame, beta: float, *, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """The max-min (egalitarian) policy over user groups and its group weights λ*:
    argmax_π min_k E_π[r_k] − β KL(π‖π_ref) (Chakraborty et al. 2024, "MaxMin-RLHF", eq. 9). By Sion's
    minimax theorem it equals π_λ* ∝ π_ref exp(Σ_k λ*_k r_k/β) with λ* minimising the smooth convex dual
    D(λ) over the simplex; SLSQP finds the active groups, then Newton's method on the active face polishes
    λ* (the KKT conditions: equal values on active groups, higher values elsewhere)."""
    _check_beta(beta)
    G = game.n_groups
    if G == 0:
        raise ConfigError(f"game '{game.name}' has no user groups", field="group_rewards")
    lam = np.full(G, 1.0 / G)
    if G > 1:
        res = minimize(
            lambda v: _dual(game, v, beta)[:2],
            lam,
            jac=True,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * G,
            constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1.0, "jac": lambda v: np.ones_like(v)}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        lam = np.clip(res.x, 0.0, None)
        lam /= lam.sum()
        active = lam > 1e-7
        for _ in range(50):  # Newton on the active face: ∇D_k(λ) = v for k active, Σ λ = 1
            _, grad, pi = _dual(game, lam, beta)
            R = game.group_rewards[active]  # (A, X, K)
            centred = R - np.einsum("axk,xk->ax", R, pi)[:, :, None]
            H = np.einsum("x,axk,bxk,xk->ab", game.context_probs, centred, centred, pi) / beta
            A = int(active.sum())
            KKT = np.zeros((A + 1, A + 1))
            KKT[:A, :A], KKT[:A, A], KKT[A, :A] = H, 1.0, 1.0
            rhs = np.concatenate([-(grad[active] - grad[active].mean()), [0.0]])
            if np.abs(rhs).max() < tol:
                break
            try:
                step = np.linalg.lstsq(KKT, rhs, rcond=None)[0][:A]
            except np.linalg.LinAlgError:  # pragma: no cover
                break
            lam[active] = np.clip(lam[active] + step, 0.0, None)
            lam /= lam.sum()
    return _dual(game, lam, beta)[2], lam
