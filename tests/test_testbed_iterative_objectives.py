"""Iterative DPO's objective choice on the exact testbed: ``run_algorithm("iterative_dpo", game, objective=NAME)``
keeps the rounds (pairs from π_t) and π_t as the reference for an objective with one, and takes none for SimPO and
ORPO. What each (algorithm, objective) pair converges to is its own claim (:data:`preflab.algorithms.VARIANTS`),
measured here against the exact solvers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax

from preflab.algorithms import VARIANTS
from preflab.errors import ConfigError, TrainingError
from preflab.objectives import REGISTRY
from preflab.testbeds import cyclic_game, evaluate, exploitability, minimax_winner, run_algorithm, tv_distance
from preflab.testbeds.expectations import PairTable
from preflab.testbeds.games import bt_game

SIMPO = {"beta": 2.0, "gamma": 0.5}


@pytest.fixture(scope="module")
def game():
    """Rock–paper–scissors (deterministic cycle) with a skewed reference; its minimax winner is uniform."""
    return cyclic_game(3, ref=[0.6, 0.3, 0.1])


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_an_iterative_ipo_round_is_a_hedge_step_against_the_previous_iterate(game, beta):
    """IPO's population solution with data and reference both π_t is π_t·exp(P(y ≻ π_t)/β)/Z: each round is the
    multiplicative-weights (Hedge) step of step size 1/β on the preference game — the reference moves to π_t."""
    traj = run_algorithm("iterative_dpo", game, beta, objective="ipo", iterations=3, inner_steps=20)
    assert traj.algorithm == "iterative_dpo" and traj.guarantee == "average"
    P = game.annotator_pref()
    for t in range(3):
        pi_t = traj.policies[t]
        hedge = softmax(np.log(pi_t) + np.einsum("xij,xj->xi", P, pi_t) / beta, axis=-1)
        assert np.abs(traj.policies[t + 1] - hedge).max() < 1e-8
    # against the fixed π_ref (what a fixed reference would give) the second round is a different policy
    fixed = softmax(np.log(game.ref) + np.einsum("xij,xj->xi", P, traj.policies[1]) / beta, axis=-1)
    assert np.abs(traj.policies[2] - fixed).max() > 1e-2


def test_iterative_ipo_is_hedge_and_its_average_approaches_the_minimax_winner(game):
    """Self-play Hedge with step 1/β: its average iterate's exploitability (β = 0: the best response's win rate
    over ½) is its average regret, at most β·ln(1/min π_0)/T + 1/(8β) — the minimax winner up to O(1/β) and
    O(β/T). Measured at β = 10, T = 800: TV 5e-3 to the uniform winner, exploitability 4e-3 (bound 4.1e-2);
    the last iterate cycles and does not converge."""
    winner = minimax_winner(game)
    claim = VARIANTS[("iterative_dpo", "ipo")]
    assert claim.guarantee == "average" and claim.verified_by.endswith(
        "::test_iterative_ipo_is_hedge_and_its_average_approaches_the_minimax_winner"
    )
    for beta, T in ((2.0, 200), (10.0, 800)):
        traj = run_algorithm("iterative_dpo", game, beta, objective="ipo", iterations=T)
        average = np.mean(traj.policies[:-1], axis=0)  # π_0 … π_{T−1}: the iterates the regret is about
        bound = beta * np.log(1 / game.ref.min()) / T + 1 / (8 * beta)
        assert exploitability(game, average, 0.0) <= bound
        ev = evaluate(traj, game, winner, 0.0)  # the tracked iterate: the running average of π_1 … π_T
        assert ev.guarantee == "average" and ev.distances[0] > 0.25
        assert tv_distance(traj.policies[-1], winner) > 0.2  # the last iterate does not converge
        if beta == 10.0:
            assert ev.distance < 1e-2 and ev.exploitability < 5e-3


def test_iterative_ipo_at_small_beta_stops_when_the_policy_turns_pure(game):
    """A Hedge step of 1/β = 50 drives the cyclic game's policy into a corner: after 4 rounds two draws from π_t
    differ with probability ~5e-14, and the run stops there with a TrainingError naming the cause, not a NaN."""
    traj = run_algorithm("iterative_dpo", game, 0.02, objective="ipo", iterations=4)
    assert np.isfinite(traj.losses).all() and traj.policies[-1].max() > 1 - 1e-12
    with pytest.raises(TrainingError) as err:
        run_algorithm("iterative_dpo", game, 0.02, objective="ipo", iterations=10)
    assert err.value.message.startswith(
        "iterative_dpo with objective ipo: the policy collapsed to a pure strategy at iteration 5 (context 0, "
        "action 1): no distinct pairs to sample (1 − Σπ² = "
    )
    assert "\n" not in str(err.value)


def test_iterative_simpo_reaches_a_fixed_point_without_a_reference(monkeypatch):
    """Iterative SimPO takes no reference: its loss reads mean log-probs of π_t's pairs only. Each round's
    minimiser depends on π_t through the pair weights alone, and the rounds settle on a fixed point — π minimises
    the SimPO loss of its own pairs (projected gradient < 1e-7). On a symmetric cycle (labels ¾ / ¼) that is the
    uniform minimax winner, reached from π_ref = (0.6, 0.3, 0.1) to 1e-6 in 30 rounds."""
    seen = []
    original = REGISTRY["simpo"].fn

    def spy(inputs, params):
        seen.append((inputs.ref_chosen, inputs.ref_rejected))
        return original(inputs, params)

    monkeypatch.setattr(REGISTRY["simpo"], "fn", spy)
    cyc = cyclic_game(3, 0.5, ref=[0.6, 0.3, 0.1])
    traj = run_algorithm("iterative_dpo", cyc, 0.1, objective="simpo", iterations=30, params=SIMPO)
    assert seen and all(ref == (None, None) for ref in seen)  # no reference log-probs, ever
    assert tv_distance(traj.policies[1], minimax_winner(cyc)) > 1e-3
    assert tv_distance(traj.final, minimax_winner(cyc)) < 1e-6
    assert VARIANTS[("iterative_dpo", "simpo")].guarantee == "last" and traj.guarantee == "last"

    bt = bt_game(seed=0, lengths=[[1, 2, 3, 4], [2, 2, 1, 1]])  # a transitive game, length-normalised
    traj = run_algorithm("iterative_dpo", bt, 0.1, objective="simpo", iterations=8, params=SIMPO)
    spec = REGISTRY["simpo"]
    params = spec.make_params(**SIMPO)

    def gradient(pi):  # the SimPO loss of π's own pairs, differentiated in the logits at π
        logp = torch.tensor(np.log(pi), requires_grad=True)
        table = PairTable(pi, bt.context_probs, bt.annotator_pref(), lengths=bt.lengths)
        original(table(logp), params)[0].backward()
        g = logp.grad.numpy()
        return np.abs(g - pi * g.sum(-1, keepdims=True)).max()

    assert gradient(traj.policies[0]) > 1e-2 and gradient(traj.final) < 1e-7
    assert np.abs(traj.policies[-1] - traj.policies[-2]).max() < 1e-6


def test_iterative_simpo_with_a_large_margin_stops_when_the_policy_turns_pure(game):
    """SimPO's β defaults to the game's (0.1) on the testbed; with γ = 1 a round asks for a margin of γ/β = 10 in
    mean log-probs on pairs labelled 1 / 0, which drives the cycle's policy into a corner within two rounds. The
    run stops with the cause named; at β = 2, γ = ½ the same game settles on the uniform policy instead."""
    with pytest.raises(TrainingError) as err:
        run_algorithm("iterative_dpo", game, 0.1, objective="simpo", iterations=10)
    assert err.value.message.startswith(
        "iterative_dpo with objective simpo: the policy collapsed to a pure strategy at iteration 3"
    )
    traj = run_algorithm("iterative_dpo", game, 0.1, objective="simpo", iterations=40, params=SIMPO)
    assert tv_distance(traj.final, minimax_winner(game)) < 1e-4


@pytest.mark.parametrize(
    ("objective", "message"),
    [
        ("sppo", "objective 'sppo' is the loss of algorithm 'sppo' on this schedule"),
        ("kto", "objective 'kto' is the loss of algorithm 'kto', which trains on a fixed dataset of single"),
        ("bt_reward", "objective 'bt_reward' trains a reward model"),
    ],
)
def test_an_objective_iterative_dpo_cannot_train_is_a_config_error(game, objective, message):
    with pytest.raises(ConfigError) as err:
        run_algorithm("iterative_dpo", game, 0.1, objective=objective)
    text = str(err.value)
    assert message in text and "\n" not in text
    assert text.endswith("; set algorithm: sppo") == (objective == "sppo")
