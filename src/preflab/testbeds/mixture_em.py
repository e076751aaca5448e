"""Expectation–maximisation of a mixture of Bradley–Terry reward tables from annotated pairs (MaxMin-RLHF's
reward-learning stage) on a testbed game, with the registered ``maxmin_em`` objective as the M-step loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..objectives import get_objective
from ..objectives.game_inputs import GroupPairInputs
from ..objectives.maxmin import responsibilities
from .policy import single_thread
from .sampling import PairSample

__all__ = ["MixtureFit", "fit_reward_mixture"]


@dataclass
class MixtureFit:
    """rewards: (G, X, K) learned reward tables (each context centred). prior: (G,) group weights.
    responsibilities: (A, G) posterior memberships of the annotators (sorted ids). log_likelihood: per
    EM iteration (non-decreasing up to the M-step's tolerance)."""

    rewards: np.ndarray
    prior: np.ndarray
    responsibilities: np.ndarray
    log_likelihood: list[float]


def fit_reward_mixture(
    sample: PairSample,
    n_groups: int,
    n_contexts: int,
    n_actions: int,
    *,
    iterations: int = 30,
    m_steps: int = 5,
    seed: int = 0,
    hard: bool = False,
) -> MixtureFit:
    """EM over ``n_groups`` reward tables: the E-step computes annotator responsibilities under the current
    rewards and prior; the M-step minimises the responsibility-weighted Bradley–Terry loss (``maxmin_em``
    with the E-step held fixed) by L-BFGS and sets the prior to the mean responsibility. Rewards start from
    small seeded noise (to break the symmetry between groups)."""
    if sample.annotator is None:
        raise ValueError("fit_reward_mixture needs a sample with annotator ids (sample_group_pairs)")
    spec = get_objective("maxmin_em")
    params = spec.make_params(hard=hard)
    gen = torch.Generator().manual_seed(seed)
    rewards = (0.5 * torch.randn(n_groups, n_contexts, n_actions, generator=gen, dtype=torch.float64)).requires_grad_(
        True
    )
    prior = torch.full((n_groups,), 1.0 / n_groups, dtype=torch.float64)
    x, w, lo = sample.x, sample.chosen, sample.rejected

    def inputs(gamma: torch.Tensor | None = None) -> GroupPairInputs:
        return GroupPairInputs(
            reward_chosen=rewards[:, x, w].T,
            reward_rejected=rewards[:, x, lo].T,
            annotator=sample.annotator,
            prior=prior,
            responsibilities=gamma,
        )

    history: list[float] = []
    opt = torch.optim.LBFGS([rewards], max_iter=20, history_size=20, line_search_fn="strong_wolfe")
    with single_thread():
        for _ in range(iterations):
            with torch.no_grad():
                gamma, marginal = responsibilities(inputs(), hard=hard)
            history.append(float(marginal.sum()))

            def closure(gamma: torch.Tensor = gamma) -> torch.Tensor:
                opt.zero_grad()
                loss = spec(inputs(gamma), params)[0]
                loss.backward()
                return loss

            for _ in range(m_steps):
                opt.step(closure)
            prior = gamma.mean(0).clamp_min(1e-12)
            prior = prior / prior.sum()
        with torch.no_grad():
            gamma, _ = responsibilities(inputs(), hard=hard)
    r = rewards.detach().numpy()
    return MixtureFit(r - r.mean(-1, keepdims=True), prior.numpy(), gamma.numpy(), history)
