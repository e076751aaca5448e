"""Pairwise reference-based objectives (dpo, cdpo, rdpo, ipo, hinge, rpo): hand-computed values, gradients,
soft labels, weights, edge cases and swap identities."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from preflab.errors import ConfigError
from preflab.objectives import REGISTRY, PairInputs, get_objective

# Fixed example: h_w = [0.5, 0.0], h_l = [-0.5, 0.5]  =>  m = [1.0, -0.5].
PC, PR, RC, RR = [-1.0, -2.0], [-3.0, -1.0], [-1.5, -2.0], [-2.5, -1.5]
LEN_W, LEN_L = [2, 3], [4, 2]
H_W, H_L, M = [0.5, 0.0], [-0.5, 0.5], [1.0, -0.5]


def nls(z: float) -> float:
    """−log σ(z) by hand."""
    return math.log1p(math.exp(-z))


def batch(prob=None, weight=None, grad=False) -> PairInputs:
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return PairInputs(
        policy_chosen=t(PC).requires_grad_(grad),
        policy_rejected=t(PR).requires_grad_(grad),
        ref_chosen=t(RC),
        ref_rejected=t(RR),
        chosen_len=torch.tensor(LEN_W),
        rejected_len=torch.tensor(LEN_L),
        prob=None if prob is None else t(prob),
        weight=None if weight is None else t(weight),
    )


def run(name: str, inputs: PairInputs, **params):
    spec = get_objective(name)
    return spec(inputs, spec.make_params(**params))


def mean(xs):
    return sum(xs) / len(xs)


PAIR_FAMILY = ["dpo", "cdpo", "rdpo", "ipo", "hinge", "rpo"]


def test_registry_lists_pair_family():
    for name in PAIR_FAMILY:
        assert REGISTRY[name].inputs == "pair"
        assert REGISTRY[name].needs_ref
        assert re.search(r"20\d\d", REGISTRY[name].doc), f"{name}: docstring cites no paper"


def test_dpo_value_and_metrics():
    b = 0.5
    loss, metrics = run("dpo", batch(), beta=b)
    assert loss.item() == pytest.approx(mean([nls(b * m) for m in M]), abs=1e-12)
    assert metrics["loss"].item() == pytest.approx(loss.item())
    assert metrics["rewards/chosen"].item() == pytest.approx(b * mean(H_W))
    assert metrics["rewards/rejected"].item() == pytest.approx(b * mean(H_L))
    assert metrics["rewards/margins"].item() == pytest.approx(b * mean(M))
    assert metrics["rewards/accuracies"].item() == pytest.approx(0.5)
    assert metrics["logps/chosen"].item() == pytest.approx(mean(PC))
    assert metrics["logps/rejected"].item() == pytest.approx(mean(PR))
    assert not any(isinstance(v, torch.Tensor) and v.requires_grad for v in metrics.values())


def test_dpo_soft_label_and_weights():
    b, p, w = 0.5, [0.8, 0.3], [1.0, 3.0]
    per = [pi * nls(b * m) + (1 - pi) * nls(-b * m) for pi, m in zip(p, M, strict=True)]
    loss, _ = run("dpo", batch(prob=p, weight=w), beta=b)
    assert loss.item() == pytest.approx((w[0] * per[0] + w[1] * per[1]) / sum(w), abs=1e-12)


def test_cdpo_value_and_eps0_is_dpo():
    b, eps = 0.5, 0.2
    loss, _ = run("cdpo", batch(), beta=b, label_smoothing=eps)
    assert loss.item() == pytest.approx(mean([(1 - eps) * nls(b * m) + eps * nls(-b * m) for m in M]))
    # a soft label is smoothed: p' = (1-eps) p + eps (1-p)
    p = [0.8, 0.3]
    ps = [(1 - eps) * q + eps * (1 - q) for q in p]
    loss, _ = run("cdpo", batch(prob=p), beta=b, label_smoothing=eps)
    assert loss.item() == pytest.approx(
        mean([q * nls(b * m) + (1 - q) * nls(-b * m) for q, m in zip(ps, M, strict=True)])
    )
    assert run("cdpo", batch(), beta=b, label_smoothing=0.0)[0].item() == pytest.approx(
        run("dpo", batch(), beta=b)[0].item()
    )


def test_rdpo_value_and_eps0_is_dpo():
    b, eps = 0.5, 0.2
    loss, _ = run("rdpo", batch(), beta=b, flip_rate=eps)
    want = mean([((1 - eps) * nls(b * m) - eps * nls(-b * m)) / (1 - 2 * eps) for m in M])
    assert loss.item() == pytest.approx(want, abs=1e-12)
    assert run("rdpo", batch(), beta=b, flip_rate=0.0)[0].item() == pytest.approx(run("dpo", batch(), beta=b)[0].item())


@settings(max_examples=50, deadline=None)
@given(z=st.floats(-20, 20), eps=st.floats(0.0, 0.45), b=st.floats(0.05, 2.0))
def test_rdpo_is_unbiased_under_flips(z, eps, b):
    """E over a label flipped with prob eps of the rDPO loss equals the clean DPO loss (Chowdhury et al., Lemma)."""
    clean = PairInputs(torch.tensor([z]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    flipped = PairInputs(torch.tensor([0.0]), torch.tensor([z]), torch.tensor([0.0]), torch.tensor([0.0]))
    expected = (1 - eps) * run("rdpo", clean, beta=b, flip_rate=eps)[0] + eps * run(
        "rdpo", flipped, beta=b, flip_rate=eps
    )[0]
    assert expected.item() == pytest.approx(run("dpo", clean, beta=b)[0].item(), rel=1e-4, abs=1e-5)


def test_ipo_value_soft_and_length_normalised():
    b = 0.5
    tgt = 1 / (2 * b)
    assert run("ipo", batch(), beta=b)[0].item() == pytest.approx(mean([(m - tgt) ** 2 for m in M]))
    p = [0.8, 0.3]
    want = mean([q * (m - tgt) ** 2 + (1 - q) * (m + tgt) ** 2 for q, m in zip(p, M, strict=True)])
    assert run("ipo", batch(prob=p), beta=b)[0].item() == pytest.approx(want)
    mn = [hw / lw - hl / ll for hw, hl, lw, ll in zip(H_W, H_L, LEN_W, LEN_L, strict=True)]  # [0.375, -0.25]
    assert run("ipo", batch(), beta=b, length_normalize=True)[0].item() == pytest.approx(
        mean([(m - tgt) ** 2 for m in mn])
    )


def test_ipo_soft_minimiser_is_paper_solution():
    """Azar et al.: with preference probability p the IPO optimum has m = (p - 1/2)/tau."""
    tau, p = 0.25, 0.7
    m = torch.tensor([(p - 0.5) / tau], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    loss, _ = run("ipo", PairInputs(m, zero, zero, zero, prob=torch.tensor([p], dtype=torch.float64)), beta=tau)
    loss.backward()
    assert abs(m.grad.item()) < 1e-12


def test_hinge_value_and_reference_free():
    b = 2.0
    assert run("hinge", batch(), beta=b)[0].item() == pytest.approx(mean([max(0.0, 1 - b * m) for m in M]))
    raw = [c - r for c, r in zip(PC, PR, strict=True)]  # [2, -1]
    got = run("hinge", batch(), beta=b, reference_free=True)[0].item()
    assert got == pytest.approx(mean([max(0.0, 1 - b * m) for m in raw]))


def test_rpo_value_and_alpha0_is_dpo():
    b, a = 0.5, 0.7
    nll = [-c / n for c, n in zip(PC, LEN_W, strict=True)]  # [0.5, 2/3]
    loss, metrics = run("rpo", batch(), beta=b, alpha=a)
    assert loss.item() == pytest.approx(mean([nls(b * m) + a * n for m, n in zip(M, nll, strict=True)]))
    assert metrics["nll_loss"].item() == pytest.approx(mean(nll))
    assert run("rpo", batch(), beta=b, alpha=0.0)[0].item() == pytest.approx(run("dpo", batch(), beta=b)[0].item())


@pytest.mark.parametrize("name", PAIR_FAMILY)
def test_soft_label_one_equals_hard(name):
    hard, _ = run(name, batch())
    soft, _ = run(name, batch(prob=[1.0, 1.0]))
    assert soft.item() == pytest.approx(hard.item(), abs=1e-12)


@pytest.mark.parametrize("name", PAIR_FAMILY)
def test_uniform_weights_change_nothing(name):
    assert run(name, batch(weight=[2.0, 2.0]))[0].item() == pytest.approx(run(name, batch())[0].item())


@pytest.mark.parametrize("name", PAIR_FAMILY)
def test_gradients_finite_and_point_the_right_way(name):
    """At m = 0 every objective pushes the chosen log-prob up and the rejected one down."""
    pc = torch.tensor([-2.0, -3.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-2.0, -3.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-2.0, -3.0], dtype=torch.float64)
    inputs = PairInputs(pc, pr, ref, ref.clone(), torch.tensor([3, 4]), torch.tensor([3, 4]))
    loss, _ = run(name, inputs)
    loss.backward()
    assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()


@pytest.mark.parametrize("name", ["dpo", "cdpo", "rdpo"])
def test_logistic_family_loss_decreases_with_margin(name):
    zero = torch.zeros(5, dtype=torch.float64)
    m = torch.linspace(-5, 5, 5, dtype=torch.float64)
    losses = [run(name, PairInputs(m[i : i + 1], zero[:1], zero[:1], zero[:1]))[0].item() for i in range(5)]
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False))


@settings(max_examples=40, deadline=None)
@given(
    hw=st.lists(st.floats(-30, 30), min_size=1, max_size=4),
    p=st.floats(0.0, 1.0),
    name=st.sampled_from(["dpo", "cdpo", "rdpo", "ipo", "hinge"]),
)
def test_swap_identity(hw, p, name):
    """Swapping chosen/rejected and the soft label p -> 1-p leaves the loss unchanged."""
    a = torch.tensor(hw, dtype=torch.float64)
    b = torch.flip(a, [0]) * 0.5
    zero = torch.zeros_like(a)
    prob = torch.full_like(a, p)
    one = run(name, PairInputs(a, b, zero, zero, prob=prob))[0]
    two = run(name, PairInputs(b, a, zero, zero, prob=1 - prob))[0]
    assert one.item() == pytest.approx(two.item(), rel=1e-9, abs=1e-9)
    if name in ("dpo", "cdpo", "ipo", "hinge"):
        assert one.item() >= 0


def test_missing_inputs_and_bad_params_are_config_errors():
    no_ref = PairInputs(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ConfigError, match="ref_chosen"):
        run("dpo", no_ref)
    with pytest.raises(ConfigError, match="chosen_len"):
        run("rpo", PairInputs(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2)))
    with pytest.raises(ConfigError, match="flip_rate"):
        get_objective("rdpo").make_params(flip_rate=0.5)
    with pytest.raises(ConfigError, match="beta"):
        get_objective("dpo").make_params(beta=0.0)
    with pytest.raises(ConfigError, match="prob"):
        run("dpo", batch(prob=[1.5, 0.2]))
