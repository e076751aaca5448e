"""Gold vs proxy over-optimisation table and Gao et al.'s scaling-law fits on planted curves."""

import numpy as np
import pytest

from preflab.errors import DataError
from preflab.evaluation import fit_scaling_law, overoptimisation

KL = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def rl_gold(kl, alpha=1.0, beta=0.5):
    d = np.sqrt(kl)
    return np.where(d > 0, d * (alpha - beta * np.log(np.where(d > 0, d, 1.0))), 0.0)


def test_rl_form_fit_recovers_planted_coefficients_and_peak():
    fit = fit_scaling_law(KL, rl_gold(np.array(KL)), form="rl")
    assert fit.alpha == pytest.approx(1.0, abs=1e-9)
    assert fit.beta == pytest.approx(0.5, abs=1e-9)
    assert fit.peak_d == pytest.approx(np.e)  # d* = exp(α/β − 1)
    assert fit.peak_kl == pytest.approx(np.e**2)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.offset == pytest.approx(0.0, abs=1e-9)


def test_bon_form_fit():
    d = np.sqrt(np.array(KL))
    fit = fit_scaling_law(KL, d * (1.0 - 0.25 * d), form="bon")
    assert (fit.alpha, fit.beta) == pytest.approx((1.0, 0.25))
    assert fit.peak_kl == pytest.approx(4.0)  # d* = α / 2β = 2
    assert fit_scaling_law([1.0, 2.0, 3.0], [0.1, 0.2, 0.3]) is None  # too few points for 3 coefficients
    with pytest.raises(DataError, match="form"):
        fit_scaling_law(KL, KL, form="ppo")


def test_table_finds_the_gold_peak_and_flags_overoptimisation():
    gold = rl_gold(np.array(KL)) + 0.3  # offset: gains are relative to the KL=0 point
    rows = [
        {"step": 100 * i, "kl": k, "gold": g, "proxy": 2 * np.sqrt(k)}
        for i, (k, g) in enumerate(zip(KL, gold, strict=True))
    ]
    over = overoptimisation(list(reversed(rows)))  # order does not matter: sorted by KL
    assert [p.kl for p in over.points] == KL
    assert over.peak_step == 500 and over.peak_kl == 8.0  # d=2.83 beats d=2 and d=4
    assert over.peak_gold == pytest.approx(0.3 + np.sqrt(8) * (1 - 0.5 * np.log(np.sqrt(8))))
    assert over.gold_drop == pytest.approx(over.peak_gold - (0.3 + 4 * (1 - 0.5 * np.log(4))))
    assert over.proxy_gain_after_peak == pytest.approx(8 - 2 * np.sqrt(8))
    assert over.overoptimised
    assert over.fit.alpha == pytest.approx(1.0) and over.fit.beta == pytest.approx(0.5)
    assert over.fit.offset == pytest.approx(0.3)
    table = over.table()
    assert table[0]["gold_gain"] == 0.0 and table[-1]["proxy_gain"] == pytest.approx(8.0)
    assert table[4]["sqrt_kl"] == 2.0


def test_no_overoptimisation_when_gold_keeps_rising_or_drop_is_within_noise():
    rows = [{"step": i, "kl": k, "gold": np.sqrt(k), "proxy": k} for i, k in enumerate(KL)]
    assert not overoptimisation(rows).overoptimised
    noisy = [{"kl": 0, "gold": 0.0}, {"kl": 1, "gold": 0.5}, {"kl": 2, "gold": 0.48, "gold_se": 0.05}]
    over = overoptimisation(noisy)
    assert over.gold_drop == pytest.approx(0.02)
    assert not over.overoptimised  # 0.02 < 2 x SE


def test_round_trip_and_errors():
    rows = [{"step": 1, "kl": 0.1, "gold": 0.2, "proxy": 0.3}, {"step": 2, "kl": 0.4, "gold": 0.1, "proxy": 0.9}]
    over = overoptimisation(rows)
    again = type(over).from_dict(over.to_dict())
    assert again == over
    with pytest.raises(DataError, match=r"row 1.*'kl'"):
        overoptimisation([{"kl": 0.1}, {"gold": 1.0}])
    with pytest.raises(DataError, match=r"row 0.*'gold' must be a number"):
        overoptimisation([{"kl": 0.1, "gold": "high"}])


def test_fit_without_a_checkpoint_at_the_initial_policy():
    # a sweep whose first point already moved away from π_ref: the offset c is fitted, not assumed
    kl = np.array([0.04, 0.09, 0.16, 0.25, 0.49, 1.0])
    fit = fit_scaling_law(kl, 0.2 + rl_gold(kl, alpha=0.6, beta=0.4), form="rl")
    assert (fit.offset, fit.alpha, fit.beta) == pytest.approx((0.2, 0.6, 0.4))


def test_report_reads_the_rollout_schedules_curve_from_metrics(tmp_path):
    """A PPO/GRPO run logs kl (per token), kl/sequence, rollout/reward (the judge) and rollout/gold_reward: the
    report's over-optimisation points come from the sequence KL and those rewards, step by step."""
    import json

    from preflab.evaluation.report import overopt_from_metrics
    from preflab.evaluation.run_files import read_metrics_series

    kls, proxy, gold = [0.0, 0.2, 0.5, 1.0, 2.0], [0.1, 0.3, 0.5, 0.7, 0.9], [0.3, 0.45, 0.5, 0.4, 0.2]
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"step": i + 1, "split": "train", "kl": k / 20, "kl/sequence": k, "rollout/reward": p}
                | {"rollout/gold_reward": g}
            )
            + "\n"
            for i, (k, p, g) in enumerate(zip(kls, proxy, gold, strict=True))
        )
    )
    over = overopt_from_metrics(read_metrics_series(path))
    assert over is not None
    assert [(p.kl, p.proxy, p.gold) for p in over.points] == list(zip(kls, proxy, gold, strict=True))
    assert over.overoptimised
