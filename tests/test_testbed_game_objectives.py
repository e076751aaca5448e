"""The game-theoretic objectives on small hand-computed examples, and the exactness of their policy-gradient
surrogates on the testbed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from preflab.errors import ConfigError
from preflab.objectives import get_objective
from preflab.objectives.game_inputs import (
    GroupPairInputs,
    GroupRewardInputs,
    IterativePairInputs,
    SampleInputs,
    XPOInputs,
    baselined,
)
from preflab.testbeds import cyclic_game
from preflab.testbeds.expectations import exact_samples, t, win_rates


def T(*values):
    return torch.tensor(values, dtype=torch.float64)


def softplus(z):
    return math.log1p(math.exp(z))


def test_inpo_by_hand():
    spec = get_objective("inpo")
    inputs = IterativePairInputs(
        policy_chosen=T(-1.0), policy_rejected=T(-2.0), ref_chosen=T(-1.5), ref_rejected=T(-1.0),
        anchor_chosen=T(-1.2), anchor_rejected=T(-1.8),
    )  # fmt: skip
    # ητ = 0.5: h_w = −1 + 0.75 + 0.6 = 0.35, h_l = −2 + 0.5 + 0.9 = −0.6, (0.95 − η/2)² = 0.45²
    loss, metrics = spec(inputs, spec.make_params(beta=0.5, eta=1.0))
    assert float(loss) == pytest.approx(0.2025, abs=1e-12)
    assert float(metrics["rewards/margins"]) == pytest.approx((-1.0 + 1.2) - (-2.0 + 1.8))


def test_dno_soft_and_filtered_hard_by_hand():
    spec = get_objective("dno")
    inputs = IterativePairInputs(
        policy_chosen=T(-1.0), policy_rejected=T(-2.0), anchor_chosen=T(-1.5), anchor_rejected=T(-1.5),
        win_chosen=T(0.7), win_rejected=T(0.4),
    )  # fmt: skip
    p = 1 / (1 + math.exp(-0.3))  # σ(r_w − r_l)
    loss, _ = spec(inputs, spec.make_params(eta=2.0))  # z = η Δh = 2 · 1.0
    assert float(loss) == pytest.approx(p * softplus(-2.0) + (1 - p) * softplus(2.0), abs=1e-12)
    loss, metrics = spec(inputs, spec.make_params(eta=2.0, soft=False, min_gap=0.2))
    assert float(loss) == pytest.approx(softplus(-2.0), abs=1e-12)
    loss, metrics = spec(inputs, spec.make_params(eta=2.0, soft=False, min_gap=0.35))
    assert float(loss) == 0.0 and int(metrics["kept"]) == 0
    with pytest.raises(ConfigError):
        spec(IterativePairInputs(policy_chosen=T(-1.0), policy_rejected=T(-2.0)), spec.make_params())


def test_nash_md_and_nash_mp_by_hand():
    policy = T(-0.5, -1.0).requires_grad_(True)
    inputs = SampleInputs(policy=policy, reward=T(0.8, 0.3), ref=T(-0.7, -0.7))
    loss, metrics = get_objective("nash_md")(inputs, get_objective("nash_md").make_params(beta=0.5))
    # advantages 0.8 − ½ − 0.5·0.2 = 0.2 and 0.3 − ½ + 0.5·0.3 = −0.05; baseline 0.075 → ±0.125
    assert float(loss.detach()) == pytest.approx(-(0.125 * -0.5 + -0.125 * -1.0) / 2, abs=1e-12)
    loss.backward()
    assert policy.grad.numpy() == pytest.approx([-0.0625, 0.0625])
    assert float(metrics["kl"]) == pytest.approx((0.2 - 0.3) / 2)
    spec = get_objective("nash_mp")
    inputs = SampleInputs(policy=T(-0.5, -1.0), reward=T(0.8, 0.3), ref=T(-0.7, -0.7), anchor=T(-0.6, -0.8))
    loss, _ = spec(inputs, spec.make_params(beta=0.5, eta=2.0))
    # extra −(1/η)(log π − log π_k): −0.05 and +0.1 → advantages 0.15, 0.05; baseline 0.1 → ±0.05
    assert float(loss) == pytest.approx(-(0.05 * -0.5 + -0.05 * -1.0) / 2, abs=1e-12)


def test_spo_rewards_samples_by_their_win_fraction():
    # Three samples of one prompt; the judge says a ≻ b, a ≻ c, c ≻ b: win fractions 1, 0, ½.
    policy = T(-1.0, -2.0, -0.5).requires_grad_(True)
    spec = get_objective("spo")
    loss, metrics = spec(SampleInputs(policy=policy, reward=T(1.0, 0.0, 0.5)), spec.make_params())
    adv = np.array([0.5, -0.5, 0.0])
    assert float(loss.detach()) == pytest.approx(-(adv @ np.array([-1.0, -2.0, -0.5])) / 3, abs=1e-12)
    assert float(metrics["reward"]) == pytest.approx(0.5)


def test_online_dpo_is_dpo_and_xpo_adds_the_exploration_term():
    pair = {
        "policy_chosen": T(-1.0),
        "policy_rejected": T(-2.0),
        "ref_chosen": T(-1.2),
        "ref_rejected": T(-1.6),
    }
    dpo_loss = softplus(-0.5 * (0.2 - (-0.4)))
    loss, _ = get_objective("online_dpo")(XPOInputs(**pair), get_objective("online_dpo").make_params(beta=0.5))
    assert float(loss) == pytest.approx(dpo_loss, abs=1e-12)
    spec = get_objective("xpo")
    loss, metrics = spec(XPOInputs(**pair, policy_explore=T(-3.0, -1.0)), spec.make_params(beta=0.5, alpha=0.1))
    assert float(loss) == pytest.approx(dpo_loss + 0.1 * (-2.0), abs=1e-12)
    assert float(metrics["loss/xpo"]) == pytest.approx(-0.2)


def test_maxmin_policy_step_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # two samples, two groups
    policy = T(-0.3, -1.2).requires_grad_(True)
    spec = get_objective("maxmin")
    # Group values 0.5 and 1.0: group 0 is worst-off, so the reward is r_0 = (1, 0) (Algorithm 1).
    loss, metrics = spec(GroupRewardInputs(policy=policy, rewards=rewards), spec.make_params(beta=0.0))
    assert metrics["group_weights"].numpy() == pytest.approx([1.0, 0.0])
    assert float(loss) == pytest.approx(-(0.5 * -0.3 + -0.5 * -1.2) / 2, abs=1e-12)
    lam = T(0.25, 0.75)  # advantages 0.25 and 1.5, baseline 0.875
    loss, _ = spec(GroupRewardInputs(policy=policy, rewards=rewards, group_weights=lam), spec.make_params(beta=0.0))
    assert float(loss) == pytest.approx(-(-0.625 * -0.3 + 0.625 * -1.2) / 2, abs=1e-12)
    with pytest.raises(ConfigError):
        spec(GroupRewardInputs(policy=policy, rewards=rewards, group_weights=T(0.5, 0.6)), spec.make_params())


def test_maxmin_em_responsibilities_by_hand():
    # Annotator 0 labels two pairs, annotator 1 one pair; group 0 agrees with every label (Δ = +1), group 1
    # disagrees (Δ = −1) except on annotator 1's pair.
    diff = torch.tensor([[1.0, -1.0], [1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    inputs = GroupPairInputs(
        reward_chosen=diff, reward_rejected=torch.zeros_like(diff), annotator=torch.tensor([0, 0, 1])
    )
    loss, metrics = get_objective("maxmin_em")(inputs, get_objective("maxmin_em").make_params())
    ls = [math.log(1 / (1 + math.exp(-d))) for d in (1.0, -1.0)]
    odds = math.exp(2 * ls[0]) / (math.exp(2 * ls[0]) + math.exp(2 * ls[1]))
    gamma = metrics["responsibilities"].numpy()
    assert gamma[0] == pytest.approx([odds, 1 - odds], abs=1e-12)
    assert gamma[1] == pytest.approx([0.5, 0.5], abs=1e-12)
    expected = (2 * -(odds * ls[0] + (1 - odds) * ls[1]) + -(0.5 * ls[0] + 0.5 * ls[0])) / 3
    assert float(loss) == pytest.approx(expected, abs=1e-12)
    assert metrics["prior"].numpy() == pytest.approx([(odds + 0.5) / 2, (1 - odds + 0.5) / 2])


def test_baseline_is_per_prompt():
    values = T(1.0, 3.0, 10.0, 20.0)
    out = baselined(values, T(1.0, 1.0, 3.0, 1.0), torch.tensor([0, 0, 1, 1]))
    assert out.numpy() == pytest.approx([-1.0, 1.0, -2.5, 7.5])


def test_exact_policy_gradient_surrogate_equals_the_true_gradient():
    """With every action weighted by ρ π (detached), the Nash-MD surrogate's gradient is the gradient of
    J(θ) = Σ_x ρ(x) [Σ_y π(y|x) (P(y ≻ opp) − ½) − β KL(π(·|x) ‖ π_ref(·|x))] (its negative)."""
    game = cyclic_game(3, ref=[0.5, 0.3, 0.2], n_contexts=2).with_ref([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    beta = 0.3
    logits = torch.tensor([[0.1, -0.4, 0.7], [1.0, 0.0, -1.0]], dtype=torch.float64, requires_grad=True)
    log_ref = t(np.log(game.ref))
    opponent = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    reward = win_rates(game.pref, opponent)
    lp = torch.log_softmax(logits, -1)
    loss, _ = get_objective("nash_md")(
        exact_samples(lp, reward, game.context_probs, ref=log_ref),
        get_objective("nash_md").make_params(beta=beta),
    )
    (surrogate_grad,) = torch.autograd.grad(loss, logits)
    lp = torch.log_softmax(logits, -1)
    pi = lp.exp()
    J = (t(game.context_probs)[:, None] * (pi * (reward - 0.5) - beta * pi * (lp - log_ref))).sum()
    (true_grad,) = torch.autograd.grad(J, logits)
    assert surrogate_grad.numpy() == pytest.approx(-true_grad.numpy(), abs=1e-12)
