"""Listwise objectives (pro, lipo): hand-computed Plackett–Luce and lambda-weighted values, reductions to
pairwise DPO at K = 2, padding, ties, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from preflab.errors import ConfigError
from preflab.objectives import REGISTRY, PairInputs, RankingInputs, get_objective

NAN = float("nan")


def t(v):
    return torch.tensor(v, dtype=torch.float64)


def nls(z: float) -> float:
    return math.log1p(math.exp(-z))


def lse(*xs: float) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def run(name, inputs, **params):
    spec = get_objective(name)
    return spec(inputs, spec.make_params(**params))


def pro_batch(grad=False, weight=None) -> RankingInputs:
    # list 0: mean log-probs s = [-1, -1, -3], order 0 > 2 > 1; list 1: two real responses, 1 > 0, one padding.
    return RankingInputs(
        policy=t([[-2.0, -4.0, -3.0], [-1.0, -1.0, 123.0]]).requires_grad_(grad),
        ref=None,
        scores=t([[3.0, 1.0, 2.0], [1.0, 2.0, NAN]]),
        mask=torch.tensor([[True, True, True], [True, True, False]]),
        length=torch.tensor([[2, 4, 1], [1, 1, 1]]),
        weight=None if weight is None else t(weight),
    )


def test_registry():
    assert REGISTRY["pro"].inputs == "ranking" and REGISTRY["lipo"].inputs == "ranking"
    assert not REGISTRY["pro"].needs_ref and REGISTRY["lipo"].needs_ref


def test_pro_value_padding_and_metrics():
    s0, s1, s2 = -1.0, -1.0, -3.0  # list 0, ranked 0 > 2 > 1
    list0 = (lse(s0, s2, s1) - s0) + (lse(s2, s1) - s2)
    list1 = lse(-1.0, -1.0) + 1.0  # one term (1 > 0), both s = -1: = log 2
    loss, m = run("pro", pro_batch())
    assert loss.item() == pytest.approx((list0 + list1) / 2, abs=1e-12)
    assert m["rewards/chosen"].item() == pytest.approx((-1 + -1) / 2)  # best of each list
    assert m["rewards/rejected"].item() == pytest.approx((-1 + -1) / 2)  # worst: item 1 (s=-1), item 0 (s=-1)
    # ordered pairs: (0,1): -1 > -1 no; (0,2): -1 > -3 yes; (2,1): -3 > -1 no; list1 (1,0): no -> 1/4
    assert m["rewards/accuracies"].item() == pytest.approx(0.25)
    w = [1.0, 3.0]
    assert run("pro", pro_batch(weight=w))[0].item() == pytest.approx((list0 + 3 * list1) / 4)


def test_pro_sft_term_and_gradients():
    inputs = pro_batch(grad=True)
    loss, _ = run("pro", inputs, sft_weight=0.5)
    list0 = (1 + lse(-1, -3, -1)) + (3 + lse(-3, -1)) + 0.5 * (2.0 / 2)  # NLL of the best, per token
    list1 = math.log(2) + 0.5 * (1.0 / 1)
    assert loss.item() == pytest.approx((list0 + list1) / 2)
    loss.backward()
    g = inputs.policy.grad
    assert torch.isfinite(g).all() and g[1, 2] == 0  # padding gets no gradient
    assert g[0, 0] < 0 and g[0, 1] > 0 and g[1, 1] < 0 and g[1, 0] > 0  # best up, worst down


def test_pro_ties_do_not_depend_on_order():
    base = dict(ref=None, scores=t([[1.0, 1.0, 0.0]]), length=None)
    one = run("pro", RankingInputs(policy=t([[-1.0, -2.0, -0.5]]), **base), length_normalize=False)[0]
    two = run("pro", RankingInputs(policy=t([[-2.0, -1.0, -0.5]]), **base), length_normalize=False)[0]
    want = 2 * lse(-1, -2, -0.5) + 1 + 2  # each tied item: lse(all) - s_i
    assert one.item() == pytest.approx(want) and two.item() == pytest.approx(want)


@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_pro_and_lipo_at_k2_reduce_to_dpo(beta):
    pc, pr, rc, rr = t([-3.0, -1.0]), t([-2.0, -4.0]), t([-2.5, -1.2]), t([-2.2, -3.0])
    dpo = run("dpo", PairInputs(pc, pr, rc, rr), beta=beta)[0].item()
    psi = t([[1.5, 0.5], [1.0, 0.0]])
    ranking = RankingInputs(policy=torch.stack([pc, pr], 1), ref=torch.stack([rc, rr], 1), scores=psi)
    assert run("pro", ranking, beta=beta, reference=True, length_normalize=False)[0].item() == pytest.approx(dpo)
    # LiPO at K = 2: Δ = |G_w − G_l| · (1/log2(2) − 1/log2(3)), per pair
    per = [
        nls(beta * ((a - c) - (b - d)))
        for a, b, c, d in zip([-3.0, -1.0], [-2.0, -4.0], [-2.5, -1.2], [-2.2, -3.0], strict=True)
    ]
    delta = [abs((2**1.5 - 1) - (2**0.5 - 1)), abs((2**1.0 - 1) - (2**0.0 - 1))]
    disc = 1 - 1 / math.log2(3)
    want = sum(d * disc * x for d, x in zip(delta, per, strict=True)) / 2
    assert run("lipo", ranking, beta=beta)[0].item() == pytest.approx(want)


def test_lipo_value_and_gradient():
    h = [0.2, -0.1, 0.4]
    inputs = RankingInputs(
        policy=t([[x - 1.0 for x in h]]).requires_grad_(True),
        ref=t([[-1.0, -1.0, -1.0]]),
        scores=t([[2.0, 0.0, 1.0]]),
    )
    # ranks under s = h: item 2 first, item 0 second, item 1 third
    inv_d = [1 / math.log2(3), 1 / math.log2(4), 1 / math.log2(2)]
    gain = [3.0, 0.0, 1.0]

    def term(i, j):
        return abs(gain[i] - gain[j]) * abs(inv_d[i] - inv_d[j]) * nls(h[i] - h[j])

    loss, m = run("lipo", inputs, beta=1.0)
    assert loss.item() == pytest.approx(term(0, 1) + term(0, 2) + term(2, 1), abs=1e-12)
    assert m["rewards/accuracies"].item() == pytest.approx(2 / 3)  # (0,1) yes, (0,2) no, (2,1) yes
    assert m["rewards/margins"].item() == pytest.approx(0.2 - (-0.1))
    loss.backward()
    assert inputs.policy.grad[0, 0] < 0 and inputs.policy.grad[0, 1] > 0


@settings(max_examples=40, deadline=None)
@given(
    vals=st.lists(st.floats(-20, 0), min_size=4, max_size=4),
    scores=st.lists(st.integers(0, 3), min_size=4, max_size=4),
    shift=st.floats(-5, 5),
    perm=st.permutations(range(4)),
)
def test_pro_properties(vals, scores, shift, perm):
    """Non-negative, invariant to a common shift of rewards and to reordering the responses."""
    x, sc = t([vals]), t([[float(s) for s in scores]])
    base = run("pro", RankingInputs(x, None, sc), length_normalize=False)[0].item()
    assert base >= -1e-12
    shifted = run("pro", RankingInputs(x + shift, None, sc), length_normalize=False)[0].item()
    p = list(perm)
    permuted = run("pro", RankingInputs(x[:, p], None, sc[:, p]), length_normalize=False)[0].item()
    assert shifted == pytest.approx(base, abs=1e-9) and permuted == pytest.approx(base, abs=1e-9)
    zero = torch.zeros_like(x)
    lipo = run("lipo", RankingInputs(x, zero, sc))[0].item()
    lipo_perm = run("lipo", RankingInputs(x[:, p], zero, sc[:, p]))[0].item()
    assert lipo >= 0
    if len(set(vals)) == 4:  # lambda ranks break reward ties by position
        assert lipo_perm == pytest.approx(lipo, abs=1e-9)


def test_no_ordered_pairs_gives_zero_loss_and_shape_errors():
    flat = RankingInputs(t([[-1.0, -2.0]]), t([[0.0, 0.0]]), t([[1.0, 1.0]]))
    assert run("lipo", flat)[0].item() == 0.0
    with pytest.raises(ConfigError, match="scores"):
        run("pro", RankingInputs(t([[-1.0, -2.0]]), None, t([[1.0, 2.0, 3.0]])), length_normalize=False)
    with pytest.raises(ConfigError, match="ref"):
        run("lipo", RankingInputs(t([[-1.0, -2.0]]), None, t([[1.0, 2.0]])))
    with pytest.raises(ConfigError, match="scores"):
        run("pro", RankingInputs(t([[-1.0, -2.0]]), None, t([[1.0, NAN]])), length_normalize=False)
