"""Policy-gradient pieces against hand-computed values: advantage estimators, KL estimators, PPO's clipped losses
at the ratio edges, the loss aggregations, the KL controllers and the value heads."""

from __future__ import annotations

import math

import pytest
import torch

from preflab.errors import ConfigError
from preflab.models.value import ValueHead
from preflab.objectives import get_objective
from preflab.objectives.advantages import (
    AdaptiveKLController,
    FixedKLController,
    gae,
    grpo_advantages,
    kl_estimate,
    masked_whiten,
    remax_advantages,
    returns_to_go,
    rloo_advantages,
    token_rewards,
)
from preflab.objectives.policy_gradient import (
    PG_OBJECTIVES,
    PolicyGradientParams,
    RolloutInputs,
    RolloutScores,
    aggregate,
    clipped_value_loss,
    estimate_advantages,
    hl_gauss_value_loss,
    ppo_policy_loss,
)

D = torch.float64


def T(x):
    return torch.tensor(x, dtype=D)


def test_gae_by_hand():
    adv, ret = gae(T([[0.0, 0.0, 1.0]]), T([[0.5, 0.6, 0.7]]), torch.ones(1, 3, dtype=torch.bool), gamma=1.0, lam=0.5)
    # δ = (0.1, 0.1, 0.3); A_2 = 0.3, A_1 = 0.1 + 0.5·0.3, A_0 = 0.1 + 0.5·0.25
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])


def test_gae_stops_at_the_last_token_and_discounts():
    mask = torch.tensor([[True, True, False]])
    adv, ret = gae(T([[0.0, 2.0, 7.0]]), T([[0.2, 0.4, 9.0]]), mask, gamma=0.9, lam=0.5)
    # δ_1 = 2 − 0.4 = 1.6 (V after the last token is 0, the padding's reward and value are ignored);
    # δ_0 = 0.9·0.4 − 0.2 = 0.16; A_0 = 0.16 + 0.45·1.6
    assert adv.tolist()[0] == pytest.approx([0.88, 1.6, 0.0])
    assert ret.tolist()[0] == pytest.approx([1.08, 2.0, 0.0])


def test_token_rewards_put_the_score_on_the_last_token_and_the_kl_everywhere():
    mask = torch.tensor([[True, True, True], [True, True, False]])
    r = token_rewards(T([1.0, 2.0]), mask, T([[0.2, 0.0, -0.2], [0.1, 0.1, 5.0]]), beta=0.5)
    assert r.tolist() == [pytest.approx([-0.1, 0.0, 1.1]), pytest.approx([-0.05, 1.95, 0.0])]
    assert returns_to_go(r, mask).tolist() == [pytest.approx([1.0, 1.1, 1.1]), pytest.approx([1.9, 1.95, 0.0])]


def test_rloo_leave_one_out_by_hand():
    adv = rloo_advantages(T([1.0, 2.0, 6.0, 3.0, 5.0]), torch.tensor([0, 0, 0, 1, 1]))
    assert adv.tolist() == pytest.approx([1 - 4.0, 2 - 3.5, 6 - 1.5, -2.0, 2.0])


def test_grpo_and_dr_grpo_by_hand():
    r, g = T([1.0, 2.0, 6.0, 3.0, 5.0]), torch.tensor([0, 0, 0, 1, 1])
    std0, std1 = math.sqrt((4 + 1 + 9) / 2), math.sqrt(2.0)  # unbiased sample std, as TRL's GRPOTrainer
    assert grpo_advantages(r, g).tolist() == pytest.approx(
        [-2 / (std0 + 1e-4), -1 / (std0 + 1e-4), 3 / (std0 + 1e-4), -1 / (std1 + 1e-4), 1 / (std1 + 1e-4)]
    )
    assert grpo_advantages(r, g, scale=False).tolist() == pytest.approx([-2.0, -1.0, 3.0, -1.0, 1.0])


def test_group_baselines_need_two_samples_per_prompt():
    with pytest.raises(ConfigError, match="at least 2 completions per prompt") as err:
        rloo_advantages(T([1.0, 2.0, 3.0]), torch.tensor([0, 0, 1]))
    assert err.value.field == "rollout.group_size"
    with pytest.raises(ConfigError, match="GRPO"):
        grpo_advantages(T([1.0]), torch.tensor([0]))


def test_weighted_group_statistics_are_the_population_ones():
    r, w = T([0.0, 1.0]), T([0.25, 0.75])
    assert rloo_advantages(r, torch.tensor([0, 0]), w).tolist() == pytest.approx([-0.75, 0.25])
    std = math.sqrt(0.25 * 0.75)
    assert grpo_advantages(r, torch.tensor([0, 0]), weight=w, eps=0.0).tolist() == pytest.approx(
        [-0.75 / std, 0.25 / std]
    )


def test_remax_and_reinforce_pp_global_whitening_by_hand():
    assert remax_advantages(T([1.0, 2.0]), T([1.5, 1.5])).tolist() == [-0.5, 0.5]
    mask = torch.tensor([[True, True, True], [True, True, False]])
    params = PolicyGradientParams(beta=0.0, whiten=True)
    roll = RolloutScores(
        score=T([1.0, 3.0]), group=torch.tensor([0, 1]), mask=mask, old_logprobs=torch.zeros(2, 3, dtype=D)
    )
    adv, _ = estimate_advantages("reinforce_pp", roll, params)
    # returns-to-go (1, 1, 1) and (3, 3): mean 1.8 over the 5 tokens, variance (3·0.64 + 2·1.44)/5 = 0.96
    lo, hi = (1 - 1.8) / math.sqrt(0.96), (3 - 1.8) / math.sqrt(0.96)
    assert adv.tolist() == [pytest.approx([lo, lo, lo]), pytest.approx([hi, hi, 0.0])]
    assert masked_whiten(T([[1.0, 1.0, 1.0], [3.0, 3.0, 99.0]]), mask).tolist()[1][:2] == pytest.approx([hi, hi])


def test_sequence_level_estimators_put_the_kl_in_the_reward_and_broadcast():
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    old, ref = T([[-1.0, -1.0], [-1.0, 0.0], [-2.0, -2.0]]), T([[-1.5, -1.0], [-1.0, 0.0], [-1.0, -2.0]])
    roll = RolloutScores(
        score=T([1.0, 1.0, 2.0]),
        group=torch.tensor([0, 0, 0]),
        mask=mask,
        old_logprobs=old,
        ref_logprobs=ref,
        baseline_score=T([0.5, 0.5, 0.5]),
    )
    params = PolicyGradientParams(beta=0.5)
    # R = score − β Σ k1 = (1 − 0.25, 1, 2 + 0.5)
    adv, _ = estimate_advantages("remax", roll, params)
    assert adv.tolist() == [pytest.approx([0.25, 0.25]), pytest.approx([0.5, 0.0]), pytest.approx([2.0, 2.0])]
    adv, _ = estimate_advantages("rloo", roll, params)
    assert adv[:, 0].tolist() == pytest.approx([0.75 - 1.75, 1 - 1.625, 2.5 - 0.875])


def test_ppo_estimator_runs_gae_on_the_critic():
    mask = torch.ones(1, 2, dtype=torch.bool)
    roll = RolloutScores(
        score=T([1.0]), group=torch.tensor([0]), mask=mask, old_logprobs=T([[0.0, 0.0]]), values=T([[0.5, 0.25]])
    )
    adv, ret = estimate_advantages("ppo", roll, PolicyGradientParams(beta=0.0, lam=1.0))
    assert adv.tolist()[0] == pytest.approx([0.5, 0.75]) and ret.tolist()[0] == pytest.approx([1.0, 1.0])


def test_kl_estimators_by_hand():
    lp, ref = T([-1.0]), T([-1.5])  # δ = 0.5
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(0.5)
    assert kl_estimate(lp, ref, "k2").item() == pytest.approx(0.125)
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 1 + 0.5)
    with pytest.raises(ConfigError, match="unknown KL estimator 'k4'"):
        kl_estimate(lp, ref, "k4")


def test_ppo_clip_at_the_ratio_edges():
    eps = 1e-6
    ratio = T([1.3, 1.2 - eps, 1.2 + eps, 0.7, 0.8 + eps, 0.8 - eps, 1.3, 0.7])
    adv = T([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 1.0])
    logp = ratio.log().requires_grad_()
    loss, clipped = ppo_policy_loss(logp, torch.zeros_like(logp), adv, 0.2, 0.2)
    assert loss.tolist() == pytest.approx([-1.2, -(1.2 - eps), -1.2, 0.8, 0.8 + eps, 0.8, 1.3, -0.7])
    assert clipped.tolist() == [True, False, True, True, False, True, False, False]
    loss.sum().backward()
    # d/dlogπ of −ρA is −ρA where unclipped; 0 where the clip binds (the pessimistic side keeps the gradient)
    assert logp.grad.tolist() == pytest.approx([0.0, -(1.2 - eps), 0.0, 0.0, 0.8 + eps, 0.0, 1.3, -0.7])


def test_asymmetric_clip_higher():
    logp = T([math.log(1.25)])
    loss, clipped = ppo_policy_loss(logp, T([0.0]), T([1.0]), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.25) and not clipped.item()


def test_clipped_value_loss_by_hand():
    v = clipped_value_loss(T([1.5, 0.9]), T([1.0, 1.0]), T([2.0, 0.5]), clip=0.2)
    # (1.5 − 2)² = 0.25 vs clipped (1.2 − 2)² = 0.64 → 0.32; (0.9 − 0.5)² inside the clip → 0.08
    assert v.tolist() == pytest.approx([0.32, 0.08])


def test_aggregations_by_hand():
    vals, mask = T([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]]), torch.tensor([[True, True, True], [True, True, False]])
    assert aggregate(vals, mask, "token_mean").item() == pytest.approx(3.0)
    assert aggregate(vals, mask, "sequence_mean").item() == pytest.approx(3.25)
    assert aggregate(vals, mask, "constant", max_length=4).item() == pytest.approx((6 / 4 + 9 / 4) / 2)
    assert aggregate(vals, mask, "token_mean", weight=T([1.0, 0.0])).item() == pytest.approx(2.0)


def test_kl_controllers():
    assert FixedKLController(0.1).update(100.0, 50) == 0.1
    up, down = AdaptiveKLController(0.1, target=6.0), AdaptiveKLController(0.1, target=6.0)
    assert up.update(9.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 100 / 10000))  # error clipped to +0.2
    assert down.update(3.0, 100) == pytest.approx(0.1 * (1 - 0.2 * 100 / 10000))
    assert AdaptiveKLController(0.1, 6.0).update(6.6, 10000) == pytest.approx(0.1 * 1.1)
    with pytest.raises(ConfigError):
        AdaptiveKLController(0.1, target=0.0)


@pytest.mark.parametrize("name", PG_OBJECTIVES)
def test_objectives_share_the_surrogate_and_kl_in_the_loss_adds_beta_k(name):
    spec = get_objective(name)
    assert spec.inputs == "rollout" and "20" in spec.doc
    mask = torch.tensor([[True, True], [True, False]])
    logp = T([[-1.0, -2.0], [-0.5, 0.0]]).requires_grad_()
    inputs = RolloutInputs(
        logprobs=logp,
        old_logprobs=logp.detach(),
        advantages=T([[1.0, 1.0], [-2.0, 0.0]]),
        mask=mask,
        ref_logprobs=T([[-1.5, -2.0], [-0.5, 0.0]]),
        values=T([[0.0, 0.0], [0.0, 0.0]]).requires_grad_(),
        old_values=torch.zeros(2, 2, dtype=D),
        returns=T([[1.0, 1.0], [1.0, 0.0]]),
    )
    params = spec.params(beta=0.1, kl_in_reward=False, kl_estimator="k2", loss_agg="token_mean")
    loss, metrics = spec(inputs, params)
    policy = -(1 + 1 - 2) / 3  # ρ = 1: −mean A over the 3 tokens
    kl = (0.125 + 0 + 0) / 3
    value = (0.5 * 3) / 3 if name == "ppo" else 0.0  # ½(0 − 1)² on each token
    assert loss.item() == pytest.approx(policy + 0.1 * kl + 0.1 * value)
    assert metrics["clip_fraction"].item() == 0.0 and metrics["kl"].item() == pytest.approx(kl)
    assert metrics["kl/sequence"].item() == pytest.approx(((-1.0 + 1.5) + 0.0 + 0.0) / 2)  # Σ_t k1, mean of 2


def test_hl_gauss_value_head_recovers_a_scalar_target():
    torch.manual_seed(0)
    feats = torch.randn(6, 8)
    target = torch.tensor([3.7, -2.5, 0.4, 6.1, -7.3, 1.0])
    for value_head in ("hl_gauss", "scalar"):
        head = ValueHead(8, value_head, num_bins=51, v_min=-10, v_max=10)
        assert head.values(feats).abs().max() < 1e-6  # starts at 0
        opt = torch.optim.Adam(head.parameters(), lr=0.05)
        params = PolicyGradientParams(v_min=-10, v_max=10, num_bins=51)
        for _ in range(600):
            opt.zero_grad()
            out = head(feats)
            if value_head == "hl_gauss":
                loss = hl_gauss_value_loss(out, target, params)[0].mean()
            else:
                loss = (0.5 * (out - target).square()).mean()
            loss.backward()
            opt.step()
        assert head.values(feats).tolist() == pytest.approx(target.tolist(), abs=0.05), value_head


def test_bad_parameters_name_their_field():
    with pytest.raises(ConfigError) as err:
        PolicyGradientParams(loss_agg="mean")
    assert err.value.field == "loss_agg"
    with pytest.raises(ConfigError) as err:
        PolicyGradientParams(clip_eps=0)
    assert err.value.field == "clip_eps"
