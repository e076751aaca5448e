"""Reward / preference model losses (bt_reward, gpm, hl_gauss): hand-computed values, skew symmetry,
a preference cycle that GPM fits and Bradley–Terry cannot, HL-Gauss targets and decoding."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from preflab.errors import ConfigError
from preflab.objectives import (
    REGISTRY,
    PreferenceEmbeddingInputs,
    RewardPairInputs,
    ScalarTargetInputs,
    get_objective,
)
from preflab.objectives.hl_gauss import hl_gauss_decode, hl_gauss_support, hl_gauss_target
from preflab.objectives.reward_models import gpm_operator, gpm_prob, gpm_score


def t(v):
    return torch.tensor(v, dtype=torch.float64)


def nls(z: float) -> float:
    return math.log1p(math.exp(-z))


def phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def run(name, inputs, **params):
    spec = get_objective(name)
    return spec(inputs, spec.make_params(**params))


def test_registry_kinds():
    assert REGISTRY["bt_reward"].inputs == "reward_pair"
    assert REGISTRY["gpm"].inputs == "preference_embedding"
    assert REGISTRY["hl_gauss"].inputs == "scalar_target"
    assert not any(REGISTRY[n].needs_ref for n in ("bt_reward", "gpm", "hl_gauss"))


# ---------------------------------------------------------------- bt_reward


def test_bt_reward_value_margin_centering_and_metrics():
    rw, rl, mu = [1.0, -0.5], [0.2, 0.5], [0.5, 0.0]
    loss, m = run("bt_reward", RewardPairInputs(t(rw), t(rl)))
    assert loss.item() == pytest.approx((nls(0.8) + nls(-1.0)) / 2, abs=1e-12)
    assert m["rewards/accuracies"].item() == 0.5 and m["rewards/margins"].item() == pytest.approx((0.8 - 1.0) / 2)
    loss, _ = run("bt_reward", RewardPairInputs(t(rw), t(rl), margin=t(mu)))
    assert loss.item() == pytest.approx((nls(0.8 - 0.5) + nls(-1.0)) / 2)
    loss, _ = run("bt_reward", RewardPairInputs(t(rw), t(rl)), center_rewards_coefficient=0.1)
    assert loss.item() == pytest.approx((nls(0.8) + nls(-1.0)) / 2 + 0.1 * (1.2**2 + 0.0**2) / 2)
    p, w = [0.7, 1.0], [3.0, 1.0]
    want = (3 * (0.7 * nls(0.8 - 0.5) + 0.3 * nls(-0.8 - 0.5)) + nls(-1.0)) / 4
    loss, _ = run("bt_reward", RewardPairInputs(t(rw), t(rl), margin=t(mu), prob=t(p), weight=t(w)))
    assert loss.item() == pytest.approx(want)


def test_bt_reward_gradient():
    rw = t([0.0]).requires_grad_(True)
    rl = t([0.0]).requires_grad_(True)
    run("bt_reward", RewardPairInputs(rw, rl))[0].backward()
    assert rw.grad.item() == pytest.approx(-0.5) and rl.grad.item() == pytest.approx(0.5)


# ---------------------------------------------------------------- gpm


def test_gpm_score_by_hand_and_operator():
    a, b = t([1.0, 2.0, 0.0, 1.0]), t([0.5, -1.0, 2.0, 1.0])
    # blocks: (1*(-1) - 2*0.5) + (0*1 - 1*2) = -4
    assert gpm_score(a, b).item() == pytest.approx(-4.0)
    lam = t([0.5, 2.0])
    assert gpm_score(a, b, lam).item() == pytest.approx(0.5 * -2 + 2.0 * -2)
    R = gpm_operator(4, lam, torch.float64)
    assert torch.allclose(R, -R.T)
    assert (a @ R @ b).item() == pytest.approx(gpm_score(a, b, lam).item())
    assert gpm_prob(a, b, tau=2.0).item() == pytest.approx(1 / (1 + math.exp(2.0)))


def test_gpm_loss_value_normalised_and_raw():
    a, b = t([[1.0, 2.0, 0.0, 1.0]]), t([[0.5, -1.0, 2.0, 1.0]])
    loss, m = run("gpm", PreferenceEmbeddingInputs(a, b), tau=1.0, normalize=False)
    assert loss.item() == pytest.approx(nls(-4.0))
    assert m["rewards/accuracies"].item() == 0.0 and m["preference/prob"].item() == pytest.approx(1 / (1 + math.exp(4)))
    loss, _ = run("gpm", PreferenceEmbeddingInputs(a, b), tau=0.1)
    assert loss.item() == pytest.approx(nls(-4.0 / (math.sqrt(6) * 2.5) / 0.1))
    loss, _ = run(
        "gpm",
        PreferenceEmbeddingInputs(a, b, eigenvalues=t([0.5, 2.0]), prob=t([0.25])),
        tau=1.0,
        normalize=False,
    )
    assert loss.item() == pytest.approx(0.25 * nls(-5.0) + 0.75 * nls(5.0))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=8, max_size=8))
def test_gpm_is_skew_symmetric(xs):
    a, b = t(xs[:4]), t(xs[4:])
    assert gpm_score(a, b).item() == pytest.approx(-gpm_score(b, a).item(), abs=1e-12)
    assert gpm_score(a, a).item() == 0.0
    assert (gpm_prob(a, b) + gpm_prob(b, a)).item() == pytest.approx(1.0)


def test_gpm_represents_a_three_cycle():
    v = t([[math.cos(k * 2 * math.pi / 3), math.sin(k * 2 * math.pi / 3)] for k in range(3)])
    for i in range(3):
        j = (i + 1) % 3
        assert gpm_score(v[i], v[j]).item() == pytest.approx(math.sin(2 * math.pi / 3))  # i beats i+1
        assert gpm_prob(v[i], v[j]).item() > 0.5
    # Bradley–Terry is the special case v_y = (r_y, 1)
    r = t([0.3, -1.2])
    emb = torch.stack([r, torch.ones(2, dtype=torch.float64)], -1)
    bt = run("bt_reward", RewardPairInputs(r[:1], r[1:]))[0]
    assert run("gpm", PreferenceEmbeddingInputs(emb[:1], emb[1:]), tau=1.0, normalize=False)[0].item() == pytest.approx(
        bt.item()
    )


def test_gpm_fits_a_cyclic_preference_that_bt_cannot():
    """Rock–paper–scissors with P(i ≻ i+1) = 0.9: GPM reaches the entropy floor, a BT reward stays at log 2."""
    torch.manual_seed(0)
    i, j = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    prob = t([0.9, 0.9, 0.9])
    floor = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    emb = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    rew = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([emb, rew], max_iter=100, line_search_fn="strong_wolfe")

    def losses():
        lg, _ = run("gpm", PreferenceEmbeddingInputs(emb[i], emb[j], prob=prob), tau=1.0, normalize=False)
        lb, _ = run("bt_reward", RewardPairInputs(rew[i], rew[j], prob=prob))
        return lg, lb

    def closure():
        opt.zero_grad()
        total = sum(losses())
        total.backward()
        return total

    opt.step(closure)
    lg, lb = losses()
    assert lg.item() == pytest.approx(floor, abs=1e-3)
    assert lb.item() >= math.log(2) - 1e-9
    p = gpm_prob(emb[i], emb[j]).detach()
    assert torch.allclose(p, prob, atol=5e-3)  # every edge of the cycle at 0.9


def test_gpm_rejects_odd_dimensions_and_negative_scales():
    with pytest.raises(ConfigError, match="chosen_embedding"):
        run("gpm", PreferenceEmbeddingInputs(t([[1.0, 2.0, 3.0]]), t([[1.0, 2.0, 3.0]])))
    with pytest.raises(ConfigError, match="eigenvalues"):
        run("gpm", PreferenceEmbeddingInputs(t([[1.0, 2.0]]), t([[1.0, 0.0]]), eigenvalues=t([-1.0])))


# ---------------------------------------------------------------- hl_gauss


def test_hl_gauss_target_by_hand():
    support = hl_gauss_support(0.0, 4.0, 4, torch.float64)  # edges 0..4
    y, sigma = 1.5, 0.5
    cdf = [phi((z - y) / sigma) for z in range(5)]
    want = [(cdf[k + 1] - cdf[k]) / (cdf[4] - cdf[0]) for k in range(4)]
    got = hl_gauss_target(t([y]), support, sigma)[0]
    assert got.tolist() == pytest.approx(want, abs=1e-12)
    assert got.sum().item() == pytest.approx(1.0)


def test_hl_gauss_loss_decode_and_metrics():
    params = dict(v_min=0.0, v_max=4.0, num_bins=4, sigma_ratio=0.5)  # sigma = 0.5
    logits = t([[0.0, 1.0, 2.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    targets = [1.5, 9.0]  # the second is clipped to 4
    lse = [math.log(sum(math.exp(x) for x in row)) for row in logits.tolist()]
    want = 0.0
    for row, y, c in zip(logits.tolist(), targets, lse, strict=True):
        y = min(y, 4.0)
        cdf = [phi((z - y) / 0.5) for z in range(5)]
        p = [(cdf[k + 1] - cdf[k]) / (cdf[4] - cdf[0]) for k in range(4)]
        want += -sum(pk * (x - c) for pk, x in zip(p, row, strict=True)) / 2
    loss, m = run("hl_gauss", ScalarTargetInputs(logits, t(targets)), **params)
    assert loss.item() == pytest.approx(want, abs=1e-12)
    sm = [math.exp(x - lse[0]) for x in logits[0].tolist()]
    pred0 = sum(s * c for s, c in zip(sm, [0.5, 1.5, 2.5, 3.5], strict=True))
    assert m["value/mean"].item() == pytest.approx((pred0 + 2.0) / 2)
    assert m["value/clipped"].item() == 0.5


def test_hl_gauss_optimum_decodes_to_the_target():
    """Minimising the loss over free logits recovers the target value (interior, default 101 bins)."""
    spec = get_objective("hl_gauss")
    params = spec.make_params()
    y = t([1.337, -4.2])
    logits = torch.zeros(2, params.num_bins, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss, _ = spec(ScalarTargetInputs(logits, y), params)
        loss.backward()
        return loss

    opt.step(closure)
    support = hl_gauss_support(params.v_min, params.v_max, params.num_bins, torch.float64)
    assert hl_gauss_decode(logits.detach(), support).tolist() == pytest.approx(y.tolist(), abs=1e-3)


def test_hl_gauss_config_errors():
    with pytest.raises(ConfigError, match="num_bins"):
        run("hl_gauss", ScalarTargetInputs(torch.zeros(1, 5), t([0.0])), num_bins=4)
    with pytest.raises(ConfigError, match="v_max"):
        get_objective("hl_gauss").make_params(v_min=1.0, v_max=0.0)
    with pytest.raises(ConfigError, match="target"):
        run("hl_gauss", ScalarTargetInputs(torch.zeros(1, 4), t([float("nan")])), num_bins=4)
