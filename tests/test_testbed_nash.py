"""General-preference objectives on a cyclic (intransitive) game, with exact expectations: each converges to
what its paper claims, measured against the exact solvers; and the known failures of reward-based methods."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from preflab.errors import TrainingError
from preflab.testbeds import (
    cyclic_game,
    evaluate,
    exploitability,
    minimax_winner,
    regularized_nash,
    run_algorithm,
    tv_distance,
)
from preflab.testbeds.expectations import PairTable, distinct_pair_mass

BETA = 0.2


@pytest.fixture(scope="module")
def game():
    """Rock–paper–scissors with a skewed reference: π_ref, the regularised Nash equilibrium and the minimax
    winner (uniform) are three different policies."""
    return cyclic_game(3, ref=[0.6, 0.3, 0.1])


@pytest.fixture(scope="module")
def nash(game):
    return regularized_nash(game, BETA)


def test_targets_differ(game, nash):
    assert tv_distance(nash, game.ref) > 0.15
    assert tv_distance(nash, minimax_winner(game)) > 0.05


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("inpo", {"iterations": 40, "eta": 2.5}),
        ("nash_mp", {"iterations": 12, "inner_steps": 40, "eta": 5.0}),
        ("nash_md", {"iterations": 40, "eta": 0.01}),
        ("spo", {"iterations": 150, "params": {"beta": BETA}}),  # SPO with a KL penalty: last iterate
    ],
)
def test_converges_to_the_regularized_nash_equilibrium(game, nash, name, overrides):
    traj = run_algorithm(name, game, BETA, **overrides)
    ev = evaluate(traj, game, nash, BETA, tol=1e-3)
    assert ev.guarantee == "last"
    assert ev.distance < 1e-3
    assert ev.exploitability < 1e-6
    assert ev.iterations_to_tol is not None
    assert ev.distances[0] > 0.15  # it started far away


def test_online_ipo_converges_to_the_regularized_nash_equilibrium_and_online_dpo_does_not(game, nash):
    """Online IPO (Calandriello et al. 2024): ``online_dpo`` with ``objective="ipo"``, gradient steps on IPO's loss
    over pairs drawn from the current policy, has the β-regularised Nash equilibrium as its fixed point (τ = β).
    Online DPO on the same schedule, step size and game ends far from it (a cyclic game has no Bradley–Terry fit)."""
    steps = {"iterations": 100, "inner_steps": 1, "optimizer": "sgd", "lr": 0.2}
    ipo = evaluate(run_algorithm("online_dpo", game, BETA, objective="ipo", **steps), game, nash, BETA, tol=1e-3)
    assert ipo.distances[0] > 0.15 and ipo.distance < 1e-9 and ipo.exploitability < 1e-9
    assert ipo.iterations_to_tol is not None and ipo.iterations_to_tol < 50
    dpo = evaluate(run_algorithm("online_dpo", game, BETA, **steps), game, nash, BETA, tol=1e-3)
    assert dpo.distance > 0.15 and dpo.exploitability > 0.02


def test_inpo_iteration_is_the_online_mirror_descent_step(game):
    """One INPO iteration (loss minimised exactly) equals π_1 ∝ π_0^{1−ητ} π_ref^{ητ} exp(η P(y ≻ π_0))."""
    eta = 2.0
    init = np.array([[0.2, 0.3, 0.5]])
    traj = run_algorithm("inpo", game, BETA, iterations=1, inner_steps=10, eta=eta, init=init)
    win = game.pref[0] @ init[0]
    expected = softmax((1 - eta * BETA) * np.log(init[0]) + eta * BETA * np.log(game.ref[0]) + eta * win)
    assert traj.policies[-1][0] == pytest.approx(expected, abs=1e-8)


def test_nash_mp_iteration_is_the_mirror_prox_step(game):
    eta = 3.0
    traj = run_algorithm("nash_mp", game, BETA, iterations=1, inner_steps=80, eta=eta)
    P, log_ref = game.pref[0], np.log(game.ref[0])
    pi0 = game.ref[0]

    def prox(opponent):
        return softmax((eta * BETA * log_ref + np.log(pi0) + eta * P @ opponent) / (1 + eta * BETA))

    assert traj.policies[-1][0] == pytest.approx(prox(prox(pi0)), abs=1e-6)


def test_nash_md_fixed_point_bias_is_order_eta(game, nash):
    """Nash-MD-PG's fixed point solves β log(π/π_ref) = P(y ≻ π^μ) + c with π^μ ∝ π^{1−ηβ} π_ref^{ηβ}; the
    gap to the Nash equilibrium is O(η/β) (Munos et al. 2023, Theorem 1)."""
    eta = 0.5
    traj = run_algorithm("nash_md", game, BETA, iterations=60, eta=eta)
    u, log_ref, P = np.log(game.ref[0]), np.log(game.ref[0]), game.pref[0]
    for _ in range(5000):  # independent damped fixed-point iteration in numpy
        mixture = softmax((1 - eta * BETA) * u + eta * BETA * log_ref)
        u = 0.8 * u + 0.2 * log_softmax(log_ref + P @ mixture / BETA)
    assert traj.policies[-1][0] == pytest.approx(np.exp(u), abs=1e-6)
    assert 3e-3 < tv_distance(traj.policies[-1], nash) < 3e-2


def test_sppo_iteration_minimises_its_square_loss_and_is_close_to_multiplicative_weights(game):
    """SPPO's population loss Σ_y π_t(y) (log π(y)/π_t(y) − η (P(y ≻ π_t) − ½))² is minimised over the simplex
    (scipy, independently); that minimiser is the multiplicative-weights step π_t exp(η P)/Z up to the
    normalisation the paper approximates (log Z ≈ η/2)."""
    eta = 1.0
    traj = run_algorithm("sppo", game, BETA, iterations=1, inner_steps=10, eta=eta)
    pi0, P = game.ref[0], game.pref[0]
    g = eta * (P @ pi0 - 0.5)

    def loss(theta):
        return float(pi0 @ (log_softmax(theta) - np.log(pi0) - g) ** 2)

    res = minimize(loss, np.log(pi0), method="BFGS", options={"gtol": 1e-12})
    assert traj.policies[-1][0] == pytest.approx(softmax(res.x), abs=1e-6)
    mw = softmax(np.log(pi0) + eta * (P @ pi0))
    assert tv_distance(traj.policies[-1], mw[None]) < 0.02


def test_dno_iteration_is_soft_policy_iteration(game):
    """DNO's soft-target regression is minimised at π_{t+1} ∝ π_t exp(r_t/η), r_t(y) = P(y ≻ π_t)."""
    traj = run_algorithm("dno", game, BETA, iterations=1, inner_steps=10, eta=2.0)  # schedule eta = 1/η_DNO
    pi0, P = game.ref[0], game.pref[0]
    assert traj.policies[-1][0] == pytest.approx(softmax(np.log(pi0) + 2.0 * (P @ pi0)), abs=1e-8)


@pytest.mark.parametrize("name", ["sppo", "dno", "spo"])
def test_self_play_average_approaches_the_minimax_winner(game, name):
    """SPPO, DNO and SPO play the unregularised game; their guarantee is about the mixture of iterates, whose
    duality gap shrinks like O(1/√T) (Wu et al. 2024, Thm 4.1; Rosset et al. 2024; Swamy et al. 2024).
    Measured: exploitability at β = 0 of the running average, against the minimax winner."""
    overrides = {"iterations": 120, "eta": 1.0} if name != "spo" else {"iterations": 120}
    traj = run_algorithm(name, game, BETA, **overrides)
    assert traj.guarantee == "average"
    mm = minimax_winner(game)
    averages = traj.averages()
    gaps = [exploitability(game, p, 0.0) for p in averages]
    assert gaps[0] > 0.1
    assert gaps[-1] < 0.05
    assert tv_distance(averages[-1], mm) < 0.08
    # The last iterate keeps cycling instead (a known property of no-regret dynamics in zero-sum games).
    assert exploitability(game, traj.policies[-1], 0.0) > 2 * gaps[-1]


@pytest.mark.slow
def test_sppo_average_long_run(game):
    traj = run_algorithm("sppo", game, BETA, iterations=1500, inner_steps=3, eta=0.3)
    assert exploitability(game, traj.average, 0.0) < 0.01


def test_dpo_and_ipo_do_not_reach_the_nash_equilibrium(game, nash):
    """Known failure: with a fixed dataset (pairs from π_ref) and a cyclic preference, DPO's and IPO's optima
    are not the Nash equilibrium (the cycle has no Bradley–Terry reward to recover)."""
    for name in ("dpo", "ipo"):
        traj = run_algorithm(name, game, BETA, iterations=6)
        ev = evaluate(traj, game, nash, BETA)
        assert ev.distance > 0.1
        assert ev.exploitability > 0.05


def test_online_dpo_on_a_cyclic_game_at_small_beta_stops_when_the_policy_turns_pure():
    """Known failure, with its cause named: at β = 0.02 each online-DPO iteration nearly best-responds to the
    pairs of the current policy, and on a cyclic game that drives it into a corner; after two iterations two
    draws from π differ with probability ~1e-298, so there are no distinct pairs to learn from. The run stops
    there with a TrainingError saying so (it used to end on "non-finite loss nan": 0/0 pair weights)."""
    game = cyclic_game(3, ref=[0.6, 0.3, 0.1])
    pi = run_algorithm("online_dpo", game, 0.02, iterations=2).policies[-1]
    assert pi[0, 2] == 1.0 and 0.0 < distinct_pair_mass(pi)[0] < 1e-12
    with pytest.raises(TrainingError) as err:
        run_algorithm("online_dpo", game, 0.02)
    assert err.value.message.startswith(
        "online_dpo: the policy collapsed to a pure strategy at iteration 3 "
        "(context 0, action 2): no distinct pairs to sample (1 − Σπ² = "
    )


def test_pair_weights_of_a_nearly_pure_policy_stay_exact():
    """1 − Σμ² rounds to 0 long before μ is pure; the pair table's normaliser Σ_{y≠y'} μ(y) μ(y') does not, and
    a truly pure μ is an error rather than 0/0."""
    mu = np.array([[1 - 1e-17, 1e-17, 0.0]])
    assert 1 - (mu**2).sum() == 0.0
    assert float(distinct_pair_mass(mu)[0]) == pytest.approx(2e-17, rel=1e-12)
    table = PairTable(mu, [1.0], None)
    assert float(table.weight.sum()) == pytest.approx(1.0, abs=1e-12)  # distinct pairs: a distribution
    with pytest.raises(TrainingError, match=r"no distinct pairs to sample \(1 − Σμ² = 0\)"):
        PairTable(np.array([[0.0, 1.0, 0.0]]), [1.0], None)
