"""Reference-free (simpo, orpo), self-play regression (sppo) and unpaired (kto) objectives: hand-computed
values, gradients, soft labels, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from preflab.errors import ConfigError
from preflab.objectives import REGISTRY, PairInputs, UnpairedInputs, get_objective

PC, PR, RC, RR = [-1.0, -2.0], [-3.0, -1.0], [-1.5, -2.0], [-2.5, -1.5]
LEN_W, LEN_L = [2, 3], [4, 2]
A_W, A_L = [-0.5, -2 / 3], [-0.75, -0.5]  # mean token log-probs
H_W, H_L = [0.5, 0.0], [-0.5, 0.5]


def t(v):
    return torch.tensor(v, dtype=torch.float64)


def nls(z: float) -> float:
    return math.log1p(math.exp(-z))


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def mean(xs):
    return sum(xs) / len(xs)


def batch(prob=None, weight=None, **extra) -> PairInputs:
    return PairInputs(
        t(PC), t(PR), t(RC), t(RR), torch.tensor(LEN_W), torch.tensor(LEN_L),
        prob=None if prob is None else t(prob), weight=None if weight is None else t(weight),
        **{k: t(v) for k, v in extra.items()},
    )  # fmt: skip


def run(name, inputs, **params):
    spec = get_objective(name)
    return spec(inputs, spec.make_params(**params))


def test_registry_flags():
    assert not REGISTRY["simpo"].needs_ref and not REGISTRY["orpo"].needs_ref
    assert REGISTRY["sppo"].needs_ref and REGISTRY["kto"].inputs == "unpaired"


# ---------------------------------------------------------------- simpo


def test_simpo_value_and_metrics():
    b, g = 2.0, 1.0
    loss, metrics = run(
        "simpo",
        PairInputs(t(PC), t(PR), chosen_len=torch.tensor(LEN_W), rejected_len=torch.tensor(LEN_L)),
        beta=b,
        gamma=g,
    )
    zs = [b * (aw - al) for aw, al in zip(A_W, A_L, strict=True)]  # [0.5, -1/3]
    assert loss.item() == pytest.approx(mean([nls(z - g) for z in zs]), abs=1e-12)
    assert metrics["rewards/chosen"].item() == pytest.approx(b * mean(A_W))
    assert metrics["rewards/accuracies"].item() == pytest.approx(0.5)


def test_simpo_soft_label_gives_each_order_the_margin():
    b, g, p = 2.0, 0.5, [0.8, 0.3]
    zs = [b * (aw - al) for aw, al in zip(A_W, A_L, strict=True)]
    want = mean([q * nls(z - g) + (1 - q) * nls(-z - g) for q, z in zip(p, zs, strict=True)])
    assert run("simpo", batch(prob=p), beta=b, gamma=g)[0].item() == pytest.approx(want)


@settings(max_examples=30, deadline=None)
@given(
    pc=st.floats(-50, -0.1),
    pr=st.floats(-50, -0.1),
    lw=st.integers(1, 9),
    ll=st.integers(1, 9),
    p=st.floats(0, 1),
)
def test_simpo_swap_identity(pc, pr, lw, ll, p):
    one = PairInputs(t([pc]), t([pr]), chosen_len=torch.tensor([lw]), rejected_len=torch.tensor([ll]), prob=t([p]))
    two = PairInputs(t([pr]), t([pc]), chosen_len=torch.tensor([ll]), rejected_len=torch.tensor([lw]), prob=t([1 - p]))
    assert run("simpo", one)[0].item() == pytest.approx(run("simpo", two)[0].item(), rel=1e-9, abs=1e-12)
    assert run("simpo", one)[0].item() >= 0


# ---------------------------------------------------------------- orpo


def log_odds(a: float) -> float:
    return a - math.log1p(-math.exp(a))


def test_orpo_value_and_metrics():
    lam = 0.25
    loss, metrics = run("orpo", batch(), beta=lam)
    lo = [log_odds(aw) - log_odds(al) for aw, al in zip(A_W, A_L, strict=True)]
    want = mean([-aw + lam * nls(x) for aw, x in zip(A_W, lo, strict=True)])
    assert loss.item() == pytest.approx(want, abs=1e-12)
    assert metrics["nll_loss"].item() == pytest.approx(-mean(A_W))
    assert metrics["log_odds_chosen"].item() == pytest.approx(mean(lo))
    assert metrics["log_odds_ratio"].item() == pytest.approx(mean([-nls(x) for x in lo]))
    assert metrics["rewards/chosen"].item() == pytest.approx(lam * mean(A_W))


def test_orpo_soft_label_and_near_one_probability_is_finite():
    lam, p = 0.5, [0.8, 0.3]
    lo = [log_odds(aw) - log_odds(al) for aw, al in zip(A_W, A_L, strict=True)]
    want = mean([-aw + lam * (q * nls(x) + (1 - q) * nls(-x)) for aw, x, q in zip(A_W, lo, p, strict=True)])
    assert run("orpo", batch(prob=p), beta=lam)[0].item() == pytest.approx(want)
    pc = torch.tensor([0.0], requires_grad=True)  # P(y_w) = 1: odds are clamped, not infinite
    loss, _ = run(
        "orpo",
        PairInputs(pc, torch.tensor([-2.0]), chosen_len=torch.tensor([3]), rejected_len=torch.tensor([3])),
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pc.grad).all()


# ---------------------------------------------------------------- gradients (simpo, orpo, sppo)


@pytest.mark.parametrize("name", ["simpo", "orpo", "sppo"])
def test_gradients_push_chosen_up_rejected_down(name):
    pc = torch.tensor([-6.0, -9.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-6.0, -9.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-6.0, -9.0], dtype=torch.float64)
    lens = torch.tensor([3, 4])
    loss, _ = run(name, PairInputs(pc, pr, ref, ref.clone(), lens, lens))
    loss.backward()
    assert torch.isfinite(pc.grad).all() and (pc.grad < 0).all() and (pr.grad > 0).all()


@pytest.mark.parametrize("name", ["simpo", "orpo", "sppo"])
def test_soft_one_equals_hard_and_weights(name):
    assert run(name, batch(prob=[1.0, 1.0]))[0].item() == pytest.approx(run(name, batch())[0].item(), abs=1e-12)
    w = [1.0, 3.0]
    one = [run(name, _row(i))[0].item() for i in range(2)]  # each pair alone
    assert run(name, batch(weight=w))[0].item() == pytest.approx((w[0] * one[0] + w[1] * one[1]) / 4)


def _row(i: int) -> PairInputs:
    return PairInputs(
        t(PC[i : i + 1]), t(PR[i : i + 1]), t(RC[i : i + 1]), t(RR[i : i + 1]),
        torch.tensor(LEN_W[i : i + 1]), torch.tensor(LEN_L[i : i + 1]),
    )  # fmt: skip


# ---------------------------------------------------------------- sppo


def test_sppo_hard_value():
    b = 0.5
    eta = 1 / b
    want = mean([(hw - eta / 2) ** 2 + (hl + eta / 2) ** 2 for hw, hl in zip(H_W, H_L, strict=True)])  # 1.875
    assert want == pytest.approx(1.875)
    assert run("sppo", batch(), beta=b)[0].item() == pytest.approx(want)
    # hard=True ignores soft labels and win rates
    got = run(
        "sppo",
        batch(prob=[0.6, 0.6], chosen_winrate=[0.2, 0.2], rejected_winrate=[0.4, 0.4]),
        beta=b,
        hard=True,
    )
    assert got[0].item() == pytest.approx(want)


def test_sppo_soft_probability_and_winrates():
    b, p = 0.25, [0.8, 0.3]
    eta = 1 / b
    want = mean(
        [(hw - eta * (q - 0.5)) ** 2 + (hl - eta * (0.5 - q)) ** 2 for hw, hl, q in zip(H_W, H_L, p, strict=True)]
    )
    assert run("sppo", batch(prob=p), beta=b)[0].item() == pytest.approx(want)
    pw, pl = [0.7, 0.4], [0.45, 0.9]
    want = mean(
        [
            (hw - eta * (a - 0.5)) ** 2 + (hl - eta * (c - 0.5)) ** 2
            for hw, hl, a, c in zip(H_W, H_L, pw, pl, strict=True)
        ]
    )
    assert run("sppo", batch(prob=p, chosen_winrate=pw, rejected_winrate=pl), beta=b)[0].item() == pytest.approx(want)


def test_sppo_minimiser_is_multiplicative_weights_step():
    """Zero gradient exactly at log π/π_t = η (P̂ − ½) for both responses."""
    b, pw, pl = 0.2, 0.9, 0.35
    hw = torch.tensor([(pw - 0.5) / b], dtype=torch.float64, requires_grad=True)
    hl = torch.tensor([(pl - 0.5) / b], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    loss, _ = run("sppo", PairInputs(hw, hl, zero, zero, chosen_winrate=t([pw]), rejected_winrate=t([pl])), beta=b)
    loss.backward()
    assert loss.item() == pytest.approx(0.0) and hw.grad.abs().item() < 1e-12 and hl.grad.abs().item() < 1e-12


def test_sppo_winrates_must_come_together():
    with pytest.raises(ConfigError, match="rejected_winrate"):
        run("sppo", batch(chosen_winrate=[0.5, 0.5]))
    with pytest.raises(ConfigError, match="chosen_winrate"):
        run("sppo", batch(chosen_winrate=[1.5, 0.5], rejected_winrate=[0.5, 0.5]))


# ---------------------------------------------------------------- kto

POL, REF, LAB = [-1.0, -2.0, -3.0], [-1.5, -1.5, -2.0], [1, 0, 1]  # h = [0.5, -0.5, -1.0]
POL_KL, REF_KL = [-2.0, -3.0], [-2.5, -2.8]  # KL estimate = mean([0.5, -0.2]) = 0.15


def kto_batch(label=LAB, weight=None, kl=True, grad=False) -> UnpairedInputs:
    return UnpairedInputs(
        t(POL).requires_grad_(grad), t(REF), torch.tensor(label),
        policy_kl=t(POL_KL).requires_grad_(grad) if kl else None, ref_kl=t(REF_KL) if kl else None,
        weight=None if weight is None else t(weight),
    )  # fmt: skip


def test_kto_value_and_metrics():
    b, ld, lu, z = 0.5, 1.0, 2.0, 0.15
    per = [ld * (1 - sig(b * (0.5 - z))), lu * (1 - sig(b * (z + 0.5))), ld * (1 - sig(b * (-1.0 - z)))]
    loss, m = run("kto", kto_batch(), beta=b, desirable_weight=ld, undesirable_weight=lu)
    assert loss.item() == pytest.approx(mean(per), abs=1e-12)
    assert m["kl"].item() == pytest.approx(z)
    assert m["rewards/chosen"].item() == pytest.approx(b * mean([0.5, -1.0]))
    assert m["rewards/rejected"].item() == pytest.approx(b * -0.5)
    assert m["rewards/margins"].item() == pytest.approx(b * (-0.25 + 0.5))
    assert m["rewards/accuracies"].item() == pytest.approx(2 / 3)  # 0.5 > z; -0.5 < z; -1 < z (wrong)
    assert m["count/chosen"].item() == 2 and m["count/rejected"].item() == 1
    w = [1.0, 2.0, 3.0]
    got = run("kto", kto_batch(weight=w), beta=b, desirable_weight=ld, undesirable_weight=lu)[0].item()
    assert got == pytest.approx(sum(a * c for a, c in zip(w, per, strict=True)) / 6)


def test_kto_kl_clamped_detached_and_optional():
    b = 0.5
    neg = UnpairedInputs(t(POL), t(REF), torch.tensor(LAB), policy_kl=t([-3.0]), ref_kl=t([-2.0]))  # KL est -1 -> 0
    absent = kto_batch(kl=False)
    per0 = [1 - sig(b * 0.5), 1 - sig(b * 0.5), 1 - sig(b * -1.0)]
    assert run("kto", neg, beta=b)[0].item() == pytest.approx(mean(per0))
    assert run("kto", absent, beta=b)[0].item() == pytest.approx(mean(per0))
    inputs = kto_batch(grad=True)
    loss, _ = run("kto", inputs, beta=b)
    loss.backward()
    assert inputs.policy_kl.grad is None  # z is a detached reference point
    g = inputs.policy.grad
    assert torch.isfinite(g).all() and g[0] < 0 and g[2] < 0 and g[1] > 0  # desirable up, undesirable down


def test_kto_all_desirable_batch_and_bad_labels():
    loss, m = run("kto", kto_batch(label=[True, True, True]))
    assert torch.isnan(m["rewards/rejected"]) and torch.isfinite(loss)
    with pytest.raises(ConfigError, match="label"):
        run("kto", kto_batch(label=[0, 2, 1]))
    with pytest.raises(ConfigError, match="ref_kl"):
        run("kto", UnpairedInputs(t(POL), t(REF), torch.tensor(LAB), policy_kl=t(POL_KL)))
