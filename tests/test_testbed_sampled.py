"""Finite, seeded, noisy data: robust DPO beats DPO at the flip rate it assumes; sampling is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preflab.testbeds import bt_game, cyclic_game, kl_optimum, regularized_nash, tv_distance, two_group_game
from preflab.testbeds.sampling import iterate_on_samples, sample_group_pairs, sample_pairs, train_on_sample

BETA = 0.5
EPS = 0.2


@pytest.fixture(scope="module")
def noisy_game():
    return bt_game([[0.9, 0.2, -0.5]], ref=[0.3, 0.4, 0.3]).with_noise(EPS)


def test_samples_are_seeded_and_follow_the_annotators(noisy_game):
    a, b = sample_pairs(noisy_game, 4000, seed=3), sample_pairs(noisy_game, 4000, seed=3)
    assert torch.equal(a.chosen, b.chosen) and torch.equal(a.rejected, b.rejected)
    assert not torch.equal(a.chosen, sample_pairs(noisy_game, 4000, seed=4).chosen)
    assert bool((a.chosen != a.rejected).all())
    # Empirical P(0 ≻ 1) among pairs {0, 1} matches the annotated preference ε + (1 − 2ε) σ(0.7).
    both = ((a.chosen == 0) & (a.rejected == 1)) | ((a.chosen == 1) & (a.rejected == 0))
    frac = float(((a.chosen == 0) & both).sum() / both.sum())
    assert frac == pytest.approx(noisy_game.annotator_pref()[0, 0, 1], abs=0.05)


def test_rdpo_ends_closer_to_the_optimum_than_dpo_over_seeds(noisy_game):
    """Chowdhury et al. 2024: with labels flipped at rate ε, rDPO's loss is an unbiased estimate of the clean
    loss, while DPO fits the flattened preference. 2000 pairs, 5 seeds."""
    target = kl_optimum(noisy_game, BETA)
    dpo, rdpo = [], []
    for seed in range(5):
        sample = sample_pairs(noisy_game, 2000, seed=seed)
        dpo.append(tv_distance(train_on_sample("dpo", noisy_game, sample, beta=BETA), target))
        rdpo.append(tv_distance(train_on_sample("rdpo", noisy_game, sample, beta=BETA, flip_rate=EPS), target))
    assert np.mean(rdpo) < 0.5 * np.mean(dpo)
    assert sum(r < d for r, d in zip(rdpo, dpo, strict=True)) >= 4
    assert np.mean(dpo) > 0.1  # DPO's bias does not shrink with more data: it is the population optimum's


def test_group_samples_label_by_each_annotators_group():
    game = two_group_game()
    sample = sample_group_pairs(game, n_annotators=40, pairs_per_annotator=100, seed=0)
    assert len(sample) == 4000
    # Each annotator has one group; the minority share is near its population weight.
    groups = [int(sample.group[sample.annotator == a][0]) for a in range(40)]
    assert all(bool((sample.group[sample.annotator == a] == g).all()) for a, g in enumerate(groups))
    # Minority annotators prefer action 2 over action 0; majority annotators the reverse.
    for g, favourite in ((0, 0), (1, 2)):
        mask = sample.group == g
        pair = ((sample.chosen == 0) & (sample.rejected == 2)) | ((sample.chosen == 2) & (sample.rejected == 0))
        wins = float(((sample.chosen == favourite) & pair & mask).sum() / (pair & mask).sum())
        assert wins > 0.9


def test_inpo_on_sampled_pairs_approaches_the_nash_equilibrium():
    """INPO with 4000 freshly sampled and judged pairs from π_t per iteration: the iterates settle within the
    sampling noise of the regularised Nash equilibrium of a cyclic game."""
    game = cyclic_game(3, ref=[0.6, 0.3, 0.1])
    beta = 0.2
    nash = regularized_nash(game, beta)
    history = iterate_on_samples("inpo", game, beta=beta, eta=2.5, iterations=20, n_pairs=4000, seed=1)
    assert tv_distance(history[0], nash) > 0.15
    assert np.mean([tv_distance(p, nash) for p in history[-5:]]) < 0.03
    again = iterate_on_samples("inpo", game, beta=beta, eta=2.5, iterations=2, n_pairs=500, seed=1)
    assert again[-1] == pytest.approx(
        iterate_on_samples("inpo", game, beta=beta, eta=2.5, iterations=2, n_pairs=500, seed=1)[-1]
    )
