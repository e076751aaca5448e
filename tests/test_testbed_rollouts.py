"""Policy-gradient RLHF on bandit games with exact expectations (preflab.testbeds.rollouts): with the KL in the
reward every estimator's fixed point is the KL-regularised optimum π_ref·exp(r/β)/Z; GRPO's paper form (k3 in the
loss, std-scaled group advantages) converges elsewhere, to the stationary point of its own objective."""

from __future__ import annotations

import numpy as np
import pytest

from preflab.errors import ConfigError
from preflab.testbeds import bt_game, cyclic_game, kl_optimum, run_algorithm, tv_distance


@pytest.fixture(scope="module")
def game():
    return bt_game(seed=0, n_contexts=3, n_actions=4)


CASES = [
    ("ppo", {"whiten": False}),  # GAE on a per-context value table fitted by the clipped value loss
    ("rloo", {}),
    ("remax", {}),
    ("reinforce_pp", {}),  # global whitening: a smaller step (the table's testbed defaults)
    ("grpo", {"scale_rewards": False, "kl_estimator": "k2"}),  # Dr. GRPO, k2 in the loss: exact KL gradient
    ("grpo", {"scale_rewards": False, "kl_in_reward": True, "kl_estimator": "k1"}),
]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize(("name", "params"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_each_method_reaches_the_kl_regularised_optimum(game, name, params, beta):
    traj = run_algorithm(name, game, beta, params=params)
    target = kl_optimum(game, beta)
    assert tv_distance(traj.policies[0], target) > 0.05  # it had somewhere to go
    assert tv_distance(traj.final, target) < 1e-3
    assert tv_distance(traj.policies[-2], traj.final) < 1e-6  # settled, not oscillating past it


def test_grpo_paper_form_converges_to_its_own_stationary_point_not_the_kl_optimum(game):
    """k3 differentiated on-policy is the gradient of KL(π_ref‖π), and the group std rescales the reward: the
    fixed point solves π(y)(r(y) − E_π r)/(std_π r + ε) = β(π(y) − π_ref(y)) in every context."""
    beta = 0.5
    pi = run_algorithm("grpo", game, beta, lr=0.05, iterations=200).final
    r, ref = game.rewards, game.ref
    mean = (pi * r).sum(1, keepdims=True)
    std = np.sqrt((pi * (r - mean) ** 2).sum(1, keepdims=True))
    assert np.abs(pi * (r - mean) / (std + 1e-4) - beta * (pi - ref)).max() < 1e-9
    assert tv_distance(pi, kl_optimum(game, beta)) > 0.1


def test_ppo_whitened_advantages_do_not_settle_at_the_optimum(game):
    """Whitening divides by a std that vanishes at the optimum (A = R − V → 0): the steps stay O(clip)."""
    traj = run_algorithm("ppo", game, 0.5, iterations=40)
    assert tv_distance(traj.final, kl_optimum(game, 0.5)) > 1e-3


def test_a_game_without_rewards_is_a_config_error():
    with pytest.raises(ConfigError, match="has no rewards") as err:
        run_algorithm("rloo", cyclic_game(), 0.1)
    assert err.value.field == "game"
