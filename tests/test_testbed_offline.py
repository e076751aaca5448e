"""Offline objectives on Bradley–Terry games with exact expectations (every pair weighted by its probability):
each converges to the optimum its paper derives, computed independently (closed forms, or a scalar search
over the population loss written in numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit, softmax

from preflab.errors import TrainingError
from preflab.objectives import get_objective
from preflab.testbeds import bt_game, evaluate, ipo_optimum, kl_optimum, run_algorithm, tv_distance
from preflab.testbeds.expectations import win_rates

BETA = 0.5


@pytest.fixture(scope="module")
def game():
    return bt_game(seed=0, n_contexts=2, n_actions=4)


@pytest.mark.parametrize(("name", "objective"), [("dpo", None), ("online_dpo", None), ("online_dpo", "dpo")])
def test_dpo_reaches_the_kl_regularised_optimum(game, name, objective):
    traj = run_algorithm(name, game, BETA, objective=objective)
    assert tv_distance(traj.final, kl_optimum(game, BETA)) < 1e-6


def test_rdpo_on_noisy_labels_reaches_the_clean_optimum_and_dpo_does_not(game):
    noisy = game.with_noise(0.2)
    target = kl_optimum(game, BETA)
    rdpo = run_algorithm("rdpo", noisy, BETA, params={"flip_rate": 0.2})
    dpo = run_algorithm("dpo", noisy, BETA)
    assert tv_distance(rdpo.final, target) < 1e-6
    assert tv_distance(dpo.final, target) > 0.05
    # DPO learnt the flattened preference: its implicit reward gaps shrink towards zero.
    gap = np.ptp(np.log(dpo.final / game.ref), axis=-1)
    assert (gap < np.ptp(game.rewards, axis=-1) / BETA).all()


@pytest.mark.parametrize("data", ["ref", "uniform"])
def test_ipo_reaches_its_population_solution(game, data):
    """Azar et al. 2024: IPO's minimiser is π_ref exp(P(y ≻ μ)/τ) for pairs from μ — not the DPO optimum."""
    traj = run_algorithm("ipo", game, BETA, data=data)
    mu = game.ref if data == "ref" else np.full_like(game.ref, 0.25)
    assert tv_distance(traj.final, ipo_optimum(game, BETA, mu=mu)) < 1e-6
    assert tv_distance(traj.final, kl_optimum(game, BETA)) > 0.05


def _two_action_game(r=(0.8, -0.4), ref=(0.35, 0.65), lengths=(3.0, 1.0)):
    return bt_game([list(r)], ref=list(ref), lengths=list(lengths))


def _ratio_policy(ref, log_ratio_gap):
    """π with log(π1/π2) − log(ref1/ref2) = gap."""
    z = np.log(ref[0] / ref[1]) + log_ratio_gap
    return np.array([expit(z), expit(-z)])


def test_cdpo_optimum_keeps_a_smoothed_margin():
    """cDPO's minimiser on two actions: σ(β m*) = (1 − ε) p + ε (1 − p)."""
    g = _two_action_game()
    eps = 0.1
    p = expit(g.rewards[0, 0] - g.rewards[0, 1])
    traj = run_algorithm("cdpo", g, BETA, params={"label_smoothing": eps})
    expected = _ratio_policy(g.ref[0], logit((1 - eps) * p + eps * (1 - p)) / BETA)
    assert traj.final[0] == pytest.approx(expected, abs=1e-7)


def test_hinge_optimum_is_the_unit_margin():
    """SLiC/hinge: with p > ½ the expected hinge loss p (1 − βm)_+ + (1 − p)(1 + βm)_+ is minimised at βm = 1."""
    g = _two_action_game()
    traj = run_algorithm("hinge", g, BETA, iterations=1, inner_steps=300, optimizer="adam", lr=0.05)
    expected = _ratio_policy(g.ref[0], 1.0 / BETA)
    assert traj.final[0] == pytest.approx(expected, abs=1e-3)


def _scalar_optimum(pair_loss):
    """argmin over π = softmax(θ, −θ) of p·f(1 ≻ 2) + (1 − p)·f(2 ≻ 1), by a bounded scalar search."""
    res = minimize_scalar(pair_loss, bounds=(-15, 15), method="bounded", options={"xatol": 1e-12})
    return softmax([res.x, -res.x])


def _softplus(z):
    return np.logaddexp(0.0, z)


@pytest.mark.parametrize("name", ["rpo", "simpo", "orpo"])
def test_sft_and_reference_free_objectives_reach_their_population_optimum(name):
    g = _two_action_game()
    p = expit(g.rewards[0, 0] - g.rewards[0, 1])
    ref, lens = g.ref[0], g.lengths[0]
    alpha, gamma, simpo_beta, lam = 1.0, 0.5, 2.0, 0.5

    def population(theta):
        logpi = log_softmax(np.array([theta, -theta]))
        h, a = logpi - np.log(ref), logpi / lens
        log_odds = a - np.log1p(-np.exp(a))

        def f(w, lo):
            if name == "rpo":
                return _softplus(-BETA * (h[w] - h[lo])) + alpha * (-logpi[w] / lens[w])
            if name == "simpo":
                return _softplus(gamma - simpo_beta * (a[w] - a[lo]))
            return -a[w] + lam * _softplus(-(log_odds[w] - log_odds[lo]))

        return p * f(0, 1) + (1 - p) * f(1, 0)

    params = {"rpo": {"alpha": alpha}, "simpo": {"beta": simpo_beta, "gamma": gamma}, "orpo": {"beta": lam}}[name]
    traj = run_algorithm(name, g, BETA, params=params)
    assert traj.final[0] == pytest.approx(_scalar_optimum(population), abs=1e-6)


def test_pro_with_reference_reaches_the_kl_optimum_on_plackett_luce_rankings(game):
    """PRO is the Plackett–Luce likelihood of rankings; rankings drawn from PL(r) make its population
    minimiser s = r + c, i.e. β log(π/π_ref) = r + c: the KL-regularised optimum."""
    traj = run_algorithm("pro", game, BETA, params={"reference": True, "length_normalize": False})
    assert tv_distance(traj.final, kl_optimum(game, BETA)) < 1e-6
    # The table's default is the paper's form (no reference; unit lengths): the anchor is uniform, softmax(r/β).
    traj = run_algorithm("pro", game, BETA)
    assert tv_distance(traj.final, softmax(game.rewards / BETA, axis=-1)) < 1e-6


def test_lipo_ranks_actions_like_the_true_reward(game):
    pi = run_algorithm("lipo", game, BETA).final
    implicit = np.log(pi / game.ref)
    assert (np.argsort(implicit, axis=-1) == np.argsort(game.rewards, axis=-1)).all()


def test_kto_moves_mass_onto_desirable_actions(game):
    """KTO with desirability d(y) = P(y ≻ π_ref): each action's gradient has the sign of
    λ_D d − λ_U (1 − d), so the policy concentrates on actions with d > ½ and its implicit reward orders
    actions like d."""
    pi = run_algorithm("kto", game, BETA).final
    d = win_rates(game.pref, game.ref).numpy()
    desirable = d > 0.5
    assert ((pi * desirable).sum(-1) > 0.9).all()
    assert ((game.ref * desirable).sum(-1) < 0.75).all()
    implicit = np.log(pi / game.ref)
    assert (np.argsort(implicit, axis=-1) == np.argsort(d, axis=-1)).all()


def test_sft_reaches_the_demonstrations_policy():
    """SFT (token mean) on demonstrations sampled from a data policy μ (here π_ref of a game with unequal
    response lengths), started from the uniform policy, is maximum likelihood: it converges to μ itself. The
    per-sequence mean weights each demonstration by 1/|y|, so it converges to π ∝ μ/|y| instead (μ only when
    the lengths are equal)."""
    lengths = np.arange(1, 16, dtype=float).reshape(3, 5)
    g = bt_game(seed=3, n_contexts=3, n_actions=5, lengths=lengths)
    uniform = np.full_like(g.ref, 1 / 5)
    assert tv_distance(uniform, g.ref) > 0.1
    traj = run_algorithm("sft", g, BETA, init=uniform)
    np.testing.assert_allclose(traj.final, g.ref, atol=1e-6)
    assert tv_distance(traj.final, g.ref) < 1e-6

    per_seq = run_algorithm("sft", g, BETA, init=uniform, params={"per_sequence": True}).final
    shorter = g.ref / lengths
    np.testing.assert_allclose(per_seq, shorter / shorter.sum(-1, keepdims=True), atol=1e-6)
    assert tv_distance(per_seq, g.ref) > 0.1


def test_iterative_dpo_round_t_is_the_kl_optimum_at_beta_over_t(game):
    """Iterative DPO (pairs from π_t, π_t as the reference, each round's loss minimised): under Bradley–Terry
    annotators round t solves β log(π_{t+1}/π_t) = r + c, so π_t = π_ref exp(t r/β)/Z, the KL optimum at
    β/t — heading for the argmax of r. Once π_t is pure to 1e-12, no distinct pairs are left: the run stops
    there with a TrainingError naming the round, not with a NaN loss."""
    traj = run_algorithm("iterative_dpo", game, BETA, iterations=3)
    assert traj.algorithm == "iterative_dpo" and len(traj.policies) == 4
    for rounds in (1, 2, 3):
        assert tv_distance(traj.policies[rounds], kl_optimum(game, BETA / rounds)) < 1e-6
    pure = next(k for k in range(1, 200) if (1 - (kl_optimum(game, BETA / k) ** 2).sum(-1)).min() < 1e-12)
    with pytest.raises(TrainingError, match=rf"collapsed to a pure strategy at iteration {pure + 1} "):
        run_algorithm("iterative_dpo", game, BETA, iterations=200)


def test_xpo_bias_vanishes_with_alpha(game):
    target = kl_optimum(game, BETA)
    dist = {a: tv_distance(run_algorithm("xpo", game, BETA, params={"alpha": a}).final, target) for a in (1e-5, 1e-2)}
    assert dist[1e-5] < 1e-4
    assert dist[1e-2] > 10 * dist[1e-5]


def test_evaluate_counts_iterations_to_tolerance(game):
    traj = run_algorithm("dpo", game, BETA, iterations=4, inner_steps=1)
    ev = evaluate(traj, game, kl_optimum(game, BETA), BETA, tol=1e-3)
    assert ev.distances[0] == pytest.approx(tv_distance(game.ref, kl_optimum(game, BETA)))
    assert ev.iterations_to_tol is None or all(d < 1e-3 for d in ev.distances[ev.iterations_to_tol :])
    assert ev.evals == 4


def test_objective_errors_are_config_errors(game):
    from preflab.errors import ConfigError

    with pytest.raises(ConfigError):
        run_algorithm("dpoo", game, BETA)
    with pytest.raises(ConfigError):
        run_algorithm("maxmin", game, BETA)  # no user groups
    with pytest.raises(ConfigError):
        get_objective("inpo").make_params(beta=0.5, eta=4.0)  # ητ > 1
    assert torch.get_num_threads() >= 1


def test_dpo_under_length_biased_annotators_optimises_the_biased_reward():
    """Annotators whose logit gains λ per unit of length act as Bradley–Terry with reward r + λ ℓ: DPO converges
    exactly to that reward's KL optimum, moving mass to longer answers (length exploitation)."""
    game = bt_game([[0.5, 0.4, 0.0]], ref=[0.3, 0.3, 0.4], lengths=[1.0, 4.0, 2.0]).with_length_bias(0.3)
    traj = run_algorithm("dpo", game, BETA)
    biased = kl_optimum(game, BETA, rewards=game.rewards + 0.3 * game.lengths)
    assert tv_distance(traj.final, biased) < 1e-6
    assert traj.final[0, 1] > kl_optimum(game, BETA)[0, 1] + 0.3  # the long answer gains
