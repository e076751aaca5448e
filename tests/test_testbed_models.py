"""Reward and preference models fitted on exact testbed pairs: Bradley–Terry recovers BT rewards but cannot
represent a cycle (and the policy it induces misses the Nash equilibrium); the General Preference Model
represents the cycle exactly; HL-Gauss regresses win rates exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

from preflab.objectives import get_objective
from preflab.objectives.base import PreferenceEmbeddingInputs, RewardPairInputs, ScalarTargetInputs
from preflab.testbeds import bt_game, cyclic_game, exploitability, kl_optimum, regularized_nash, tv_distance
from preflab.testbeds.expectations import PairTable, t, win_rates
from preflab.testbeds.policy import single_thread


def _fit(param: torch.Tensor, loss_fn, steps: int = 60, tol: float = 1e-11) -> torch.Tensor:
    param = param.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [param],
        max_iter=20,
        history_size=50,
        tolerance_grad=1e-12,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = loss_fn(param)
        loss.backward()
        return loss

    with single_thread():
        for _ in range(steps):
            opt.step(closure)
            if float(param.grad.abs().max()) < tol:
                break
    return param.detach()


def _reward_loss(table: PairTable):
    spec = get_objective("bt_reward")
    params = spec.make_params()
    x, i, j = table.index

    def loss(r: torch.Tensor) -> torch.Tensor:
        return spec(RewardPairInputs(chosen_reward=r[x, i], rejected_reward=r[x, j], weight=table.weight), params)[0]

    return loss


def test_bt_reward_recovers_bradley_terry_rewards_up_to_a_shift():
    game = bt_game(seed=1, n_contexts=2, n_actions=4)
    table = PairTable(game.ref, game.context_probs, game.annotator_pref())
    r = _fit(torch.zeros(2, 4, dtype=torch.float64), _reward_loss(table)).numpy()
    centred = r - r.mean(-1, keepdims=True)
    assert centred == pytest.approx(game.rewards - game.rewards.mean(-1, keepdims=True), abs=1e-6)


def test_bt_reward_cannot_represent_a_cycle_and_misses_the_nash_equilibrium():
    """Known failure (Munos et al. 2023; Zhang et al. 2024): on rock–paper–scissors the best Bradley–Terry fit
    predicts every matchup badly, and RLHF on it (the KL optimum of the fitted reward) is far from the
    regularised Nash equilibrium."""
    game = cyclic_game(3, strength=0.6, ref=[0.6, 0.3, 0.1])
    beta = 0.2
    table = PairTable(game.ref, game.context_probs, game.annotator_pref())
    r = _fit(torch.zeros(1, 3, dtype=torch.float64), _reward_loss(table)).numpy()
    predicted = expit(r[0][:, None] - r[0][None, :])
    assert np.abs(predicted - game.pref[0]).max() > 0.25
    policy = kl_optimum(game, beta, rewards=r)
    nash = regularized_nash(game, beta)
    assert tv_distance(policy, nash) > 0.1
    assert exploitability(game, policy, beta) > 0.03


def test_gpm_represents_the_cycle_exactly():
    game = cyclic_game(3, strength=0.6)
    spec = get_objective("gpm")
    params = spec.make_params(tau=1.0, normalize=False)
    table = PairTable(np.full((1, 3), 1 / 3), game.context_probs, game.annotator_pref())
    _, i, j = table.index

    def loss(v: torch.Tensor) -> torch.Tensor:
        inputs = PreferenceEmbeddingInputs(chosen_embedding=v[i], rejected_embedding=v[j], weight=table.weight)
        return spec(inputs, params)[0]

    init = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1]], dtype=torch.float64)
    v = _fit(init, loss)
    from preflab.objectives.reward_models import gpm_prob

    fitted = gpm_prob(v[:, None, :], v[None, :, :]).numpy()
    assert fitted == pytest.approx(game.pref[0], abs=1e-5)


def test_hl_gauss_regresses_win_rates():
    """Targets are win/loss outcomes (1 with probability P(y ≻ π_ref), else 0); the cross-entropy minimiser is
    the mixture of the two target histograms, whose decoded mean is the win rate itself."""
    game = bt_game(seed=2, n_contexts=2, n_actions=3)
    spec = get_objective("hl_gauss")
    params = spec.make_params(v_min=-1.05, v_max=2.05, num_bins=31)
    win = win_rates(game.pref, game.ref).reshape(-1)
    n = win.numel()
    weight = torch.cat([win, 1 - win]) * t(np.repeat(game.context_probs, 3)).repeat(2)
    target = torch.cat([torch.ones(n), torch.zeros(n)]).double()

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return spec(ScalarTargetInputs(logits=logits.repeat(2, 1), target=target, weight=weight), params)[0]

    logits = _fit(torch.zeros(n, 31, dtype=torch.float64), loss, steps=40, tol=1e-9)
    from preflab.objectives.hl_gauss import hl_gauss_decode, hl_gauss_support

    decoded = hl_gauss_decode(logits, hl_gauss_support(-1.05, 2.05, 31, torch.float64))
    # L-BFGS stalls near grad 2e-7 (the far-tail bins' target mass is ~1e-30, so their logits head to −∞);
    # the decoded mean is then within ~2e-6 of the win rate, and a wrong target shape would miss by >1e-3
    assert decoded.numpy() == pytest.approx(win.numpy(), abs=1e-5)
