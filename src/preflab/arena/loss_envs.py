"""Experts and bandits: environments that reveal a loss vector each round (:class:`LossEnv`), in full
(prediction with expert advice, :func:`experts_env`) or only at the sampled arm (a stochastic K-armed bandit,
:func:`bandit_env`). Regret is against the best fixed action in hindsight (bandits: pseudo-regret against the
arm means; Cesa-Bianchi & Lugosi 2006; Bubeck & Cesa-Bianchi 2012); see :mod:`preflab.arena.envs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .env_common import BANDIT_KINDS, EXPERT_KINDS, FEEDBACK, check_actions, check_horizon, unknown_name


@dataclass
class LossEnv:
    """Experts (full information) or a K-armed bandit (bandit feedback).

    ``losses`` is the (T, K) sequence when it is fixed in advance (oblivious); ``adaptive`` environments
    choose ℓ_t from the agent's past distributions p_1..p_{t-1} (never from p_t). For a stochastic bandit
    ``means`` holds μ and ``losses`` the Bernoulli draws the agent observes; regret uses μ (pseudo-regret).
    """

    name: str
    family: str
    n_actions: int
    horizon: int
    losses: np.ndarray | None = None
    means: np.ndarray | None = None
    adaptive: str | None = None
    description: str = ""

    @property
    def feedback(self) -> str:
        return FEEDBACK[self.family]

    def loss_vector(self, t: int, past: list[np.ndarray]) -> np.ndarray:
        """The loss vector revealed at round t (0-based), given the agent's distributions before t."""
        if self.adaptive is None:
            return self.losses[t]
        ell = np.zeros(self.n_actions)
        if self.adaptive == "argmax":  # loss 1 on the action the agent favoured most last round
            prev = past[-1] if past else np.full(self.n_actions, 1.0 / self.n_actions)
            ell[int(np.argmax(prev))] = 1.0
        elif self.adaptive == "cumulative":  # loss 1 on the action with the most total weight so far
            total = np.sum(past, axis=0) if past else np.zeros(self.n_actions)
            ell[int(np.argmax(total))] = 1.0
        return ell

    def scored_vector(self, t: int, observed: np.ndarray) -> np.ndarray:
        """The vector regret is measured against: μ for stochastic bandits, the revealed losses otherwise."""
        return self.means if self.means is not None else observed


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


EXPERT_DESCRIPTIONS = {
    "adversarial": "i.i.d. uniform [0, 1] losses",
    "stochastic": "fixed means in [0.2, 0.8] plus N(0, 0.2^2) noise",
    "nonstationary": "sinusoidal means, period T/2: the best action keeps changing",
    "adaptive": "loss 1 on the action the agent favoured most last round",
    "ftl_trap": "follow-the-leader's failure: the leader flips every round",
    "lazy_trap": "one action good for T/2 rounds, then another much better",
}


def experts_env(kind: str, n_actions: int, horizon: int, seed: int) -> LossEnv:
    """Prediction with expert advice. Kinds:

    - ``adversarial``: i.i.d. uniform [0, 1] losses (an oblivious sequence no agent can predict);
    - ``stochastic``: ℓ_t,a = clip(μ_a + N(0, 0.2²)), μ evenly spread in [0.2, 0.8] in a random order;
    - ``nonstationary``: the best action switches every ⌈T/4⌉ rounds (sinusoidal means, period T/2) —
      the case for dynamic regret;
    - ``adaptive``: the adversary puts loss 1 on the action p_{t-1} favoured most (an agent that commits
      to one action pays every round; one that mixes evenly pays 1/K);
    - ``ftl_trap``: the textbook failure of follow-the-leader: ℓ_1 = (½, 0, …) then alternately e_1, e_2 (the
      leader flips every round, FTL pays ~1 per round, the best action ~½);
    - ``lazy_trap``: a long run of one good action followed by a switch (the first half favours action 0,
      the second action 1 by a larger margin): an agent that over-trusts its early history lags for
      the rest of the horizon.
    """
    rng = np.random.default_rng(seed)
    K, T = check_actions(n_actions), check_horizon(horizon)
    desc = EXPERT_DESCRIPTIONS.get(kind, "")
    if kind == "adversarial":
        return LossEnv(f"experts:{kind}", "experts", K, T, losses=rng.uniform(0, 1, (T, K)), description=desc)
    if kind == "stochastic":
        mu = rng.permutation(np.linspace(0.2, 0.8, K))
        return LossEnv(
            f"experts:{kind}", "experts", K, T, losses=_clip01(mu + rng.normal(0, 0.2, (T, K))), description=desc
        )
    if kind == "nonstationary":
        t = np.arange(T)[:, None]
        phase = 2 * np.pi * np.arange(K)[None, :] / K
        period = max(T / 2, 2.0)
        mu = 0.5 + 0.4 * np.sin(2 * np.pi * t / period + phase)
        return LossEnv(
            f"experts:{kind}", "experts", K, T, losses=_clip01(mu + rng.normal(0, 0.05, (T, K))), description=desc
        )
    if kind == "adaptive":
        return LossEnv(f"experts:{kind}", "experts", K, T, adaptive="argmax", description=desc)
    if kind == "ftl_trap":
        losses = np.ones((T, K))
        losses[:, :2] = 0.0
        losses[0, 0], losses[0, 1] = 0.5, 0.0
        for t in range(1, T):
            losses[t, 1 if t % 2 == 1 else 0] = 1.0
        return LossEnv(f"experts:{kind}", "experts", K, T, losses=losses, description=desc)
    if kind == "lazy_trap":
        half = T // 2
        losses = np.full((T, K), 0.9)
        losses[:half, 0], losses[:half, 1] = 0.3, 0.5
        losses[half:, 0], losses[half:, 1] = 0.9, 0.0
        return LossEnv(f"experts:{kind}", "experts", K, T, losses=losses, description=desc)
    raise unknown_name("experts kind", kind, EXPERT_KINDS, "env")


def bandit_env(kind: str, n_actions: int, horizon: int, seed: int, means=None) -> LossEnv:
    """A stochastic K-armed bandit with Bernoulli losses. ``bernoulli``: means evenly spread in [0.2, 0.8] in a
    random order (gap 0.6/(K−1)); ``close``: one arm 0.1 better than all others at 0.5 (hard to identify).
    ``means`` overrides both."""
    rng = np.random.default_rng(seed)
    K, T = check_actions(n_actions), check_horizon(horizon)
    if means is not None:
        mu = np.asarray(means, dtype=np.float64)
        if mu.ndim != 1 or mu.shape[0] < 2 or (mu < 0).any() or (mu > 1).any():
            raise ConfigError(
                f"bandit means must be a vector of >= 2 numbers in [0, 1] (got shape {mu.shape})", field="means"
            )
        K = mu.shape[0]
        desc = "given means"
    elif kind == "bernoulli":
        mu = rng.permutation(np.linspace(0.2, 0.8, K))
        desc = "Bernoulli losses, means evenly spread in [0.2, 0.8]"
    elif kind == "close":
        mu = np.full(K, 0.5)
        mu[rng.integers(K)] = 0.4
        desc = "Bernoulli losses, one arm at 0.4, the rest at 0.5"
    else:
        raise unknown_name("bandit kind", kind, BANDIT_KINDS, "env")
    draws = (rng.uniform(0, 1, (T, K)) < mu).astype(np.float64)
    return LossEnv(f"bandit:{kind}", "bandit", K, T, losses=draws, means=mu, description=desc)
