"""MaxMin-RLHF on a population with two user groups: the max-min objective converges to the exact max-min
policy, a single reward leaves the minority worse off, and EM recovers the groups from annotators' labels."""

from __future__ import annotations

import numpy as np
import pytest

from preflab.testbeds import evaluate, group_values, maxmin_policy, run_algorithm, tv_distance, two_group_game
from preflab.testbeds.mixture_em import fit_reward_mixture
from preflab.testbeds.sampling import sample_group_pairs


@pytest.fixture(scope="module")
def game():
    return two_group_game(minority_weight=0.2)


@pytest.mark.parametrize("beta", [0.3, 0.1])
def test_maxmin_converges_to_the_maxmin_policy(game, beta):
    target, lam = maxmin_policy(game, beta)
    traj = run_algorithm("maxmin", game, beta, iterations=250)
    ev = evaluate(traj, game, target, beta)
    assert ev.distance < 1e-3
    assert traj.extra["group_weights"] == pytest.approx(lam, abs=1e-3)
    values = group_values(game, traj.final)
    assert abs(values[0] - values[1]) < 1e-2  # the egalitarian solution equalises the two groups


def test_paper_schedule_oscillates_near_the_maxmin_policy(game):
    """Algorithm 1 (one policy step on the currently worst-off group's reward) is a subgradient method: it
    gets close but keeps switching groups at the kink."""
    beta = 0.3
    target, _ = maxmin_policy(game, beta)
    traj = run_algorithm("maxmin", game, beta, iterations=300, lr=0.1, params={"paper": True})
    assert tv_distance(traj.final, target) < 0.1
    worst = [int(np.argmin(v)) for v in traj.extra["group_values"][-50:]]
    assert 0 < sum(worst) < len(worst)  # both groups are the worst-off at some late step


def test_a_single_reward_leaves_the_minority_worse_off(game):
    """Known failure (Chakraborty et al. 2024, impossibility result): DPO on the pooled labels (one
    Bradley–Terry reward for everybody) serves the majority; the minority's expected reward is far below what
    the max-min policy guarantees it, at the same β."""
    beta = 0.3
    single = run_algorithm("dpo", game, beta).final
    maxmin, _ = maxmin_policy(game, beta)
    v_single, v_maxmin = group_values(game, single), group_values(game, maxmin)
    assert v_single[1] < v_maxmin[1] - 1.0  # minority (group 1)
    assert v_single[0] > v_maxmin[0]  # the majority does better under the single reward
    assert v_single.min() < v_maxmin.min() - 1.0


def test_em_recovers_the_groups_and_the_maxmin_policy(game):
    sample = sample_group_pairs(game, n_annotators=60, pairs_per_annotator=60, seed=0)
    fit = fit_reward_mixture(sample, 2, game.n_contexts, game.n_actions, iterations=15, seed=1)
    assert all(b >= a - 1e-6 for a, b in zip(fit.log_likelihood, fit.log_likelihood[1:], strict=False))
    truth = game.group_rewards - game.group_rewards.mean(-1, keepdims=True)
    # Match learnt groups to true groups (EM is identifiable up to a permutation).
    order = [0, 1] if np.abs(fit.rewards[0] - truth[0]).max() < np.abs(fit.rewards[1] - truth[0]).max() else [1, 0]
    learnt = fit.rewards[order]
    assert np.abs(learnt - truth).max() < 0.6
    ids = np.unique(sample.annotator.numpy())
    true_group = np.array([int(sample.group[sample.annotator == a][0]) for a in ids])
    assigned = np.asarray(order)[fit.responsibilities.argmax(1)]  # a 2-permutation is its own inverse
    assert (assigned == true_group).mean() > 0.95
    assert fit.prior[order] == pytest.approx(game.group_weights, abs=0.1)
    # The max-min policy of the learnt mixture is close to the exact one.
    from preflab.testbeds import mixture_game

    learnt_game = mixture_game(learnt, fit.prior[order], ref=game.ref)
    beta = 0.3
    assert tv_distance(maxmin_policy(learnt_game, beta)[0], maxmin_policy(game, beta)[0]) < 0.05
