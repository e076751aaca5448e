"""Classical online-learning agents: the baselines a language-model agent is measured against.

An agent is reset for a run (K actions, horizon T, its own random generator), then each round returns a
probability vector over the actions from :meth:`Agent.act` (a dueling agent returns two: one per side of
the duel) and learns from an :class:`Observation`. Deterministic agents return one-hot vectors; agents
that randomise by sampling (FTPL, Thompson sampling) return the one-hot vector of their draw, so regret is
bookkept on what they actually played. Agents register by name in :data:`AGENTS`.

``needs`` says what an agent must observe: ``full`` (every action's loss: experts and games), ``bandit``
(its own action's loss: runs anywhere a loss is revealed) or ``duel`` (which of two arms won).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class Observation:
    """What an agent sees after round ``t`` (0-based)."""

    t: int
    action: int | None = None
    """The action played (sampled from the agent's vector by the runner)."""
    loss: float | None = None
    """Its loss (bandit feedback)."""
    losses: np.ndarray | None = None
    """Every action's loss (full information), else None."""
    duel: tuple[int, int, bool] | None = None
    """(i, j, i_won) for a dueling bandit."""


class Agent:
    """Base class. Subclasses set ``name`` and ``needs`` and implement ``act`` and ``update``."""

    name = "agent"
    needs = "full"

    def reset(self, n_actions: int, horizon: int, rng: np.random.Generator) -> None:
        self.K, self.T, self.rng = n_actions, horizon, rng
        self.t = 0

    def act(self):  # -> np.ndarray | tuple[np.ndarray, np.ndarray]
        raise NotImplementedError

    def update(self, obs: Observation) -> None:
        raise NotImplementedError

    def stats(self) -> dict:
        """Per-run counters to report (parse failures for LM agents)."""
        return {}


def _one_hot(i: int, K: int) -> np.ndarray:
    v = np.zeros(K)
    v[i] = 1.0
    return v


def _softmin(L: np.ndarray, eta: float) -> np.ndarray:
    z = -eta * (L - L.min())
    w = np.exp(z)
    return w / w.sum()


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (Duchi et al. 2008)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, len(v) + 1)
    rho = np.nonzero(u * k > css - 1)[0][-1]
    theta = (css[rho] - 1) / (rho + 1.0)
    return np.maximum(v - theta, 0.0)


# -------------------------------------------------------------------------------------------- full information


class Hedge(Agent):
    """Hedge / multiplicative weights: p_t ∝ exp(−η L_{t−1}) with L the cumulative losses and η = √(8 ln K / T),
    whose expected regret on any loss sequence in [0, 1] is at most √(T ln K / 2) (Cesa-Bianchi & Lugosi 2006,
    Thm 2.2). Equal to FTRL with the negative-entropy regulariser."""

    name = "hedge"

    def __init__(self, eta: float | None = None) -> None:
        self.eta_given = eta

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.eta = self.eta_given or math.sqrt(8 * math.log(n_actions) / horizon)
        self.L = np.zeros(n_actions)

    def act(self):
        return _softmin(self.L, self.eta)

    def update(self, obs):
        self.L += obs.losses
        self.t += 1


class FTRL(Agent):
    """Follow the regularised leader with the Euclidean regulariser ‖p‖²/(2η): p_t = Π_Δ(−η L_{t−1}), the
    projection onto the simplex, η = 1 / √(T K) (regret ≤ 1/(2η) + ηTK/2 = √(T K); Orabona, A Modern Introduction to
    Online Learning)."""

    name = "ftrl"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.eta = 1.0 / math.sqrt(horizon * n_actions)
        self.L = np.zeros(n_actions)

    def act(self):
        return project_simplex(-self.eta * (self.L - self.L.mean()))

    def update(self, obs):
        self.L += obs.losses
        self.t += 1


class FTPL(Agent):
    """Follow the perturbed leader (Kalai & Vempala 2005): play argmin_a L_{t−1,a} − z_a with fresh
    z ~ Uniform[0, √(T K)]^K each round; the one-hot vector of the draw is returned."""

    name = "ftpl"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.scale = math.sqrt(horizon * n_actions)
        self.L = np.zeros(n_actions)

    def act(self):
        return _one_hot(int(np.argmin(self.L - self.rng.uniform(0, self.scale, self.K))), self.K)

    def update(self, obs):
        self.L += obs.losses
        self.t += 1


class FTL(Agent):
    """Follow the leader: all weight on the actions with the least cumulative loss (ties split evenly). Not a
    no-regret algorithm: linear regret on ``experts:ftl_trap`` and ``experts:adaptive``."""

    name = "ftl"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.L = np.zeros(n_actions)

    def act(self):
        best = np.isclose(self.L, self.L.min())
        return best / best.sum()

    def update(self, obs):
        self.L += obs.losses
        self.t += 1


class Uniform(Agent):
    """The uniform distribution every round (on both sides of a duel)."""

    name = "uniform"
    needs = "any"

    def act(self):
        return np.full(self.K, 1.0 / self.K)

    def update(self, obs):
        self.t += 1


# --------------------------------------------------------------------------------------------- bandit feedback


class EXP3(Agent):
    """EXP3 with importance-weighted loss estimates: p_t ∝ exp(−η L̂_{t−1}), L̂ += ℓ_a / p_a on the played arm,
    η = √(2 ln K / (T K)); expected regret ≤ √(2 T K ln K) (Bubeck & Cesa-Bianchi 2012, Thm 3.1)."""

    name = "exp3"
    needs = "bandit"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.eta = math.sqrt(2 * math.log(n_actions) / (horizon * n_actions))
        self.L = np.zeros(n_actions)
        self.p = np.full(n_actions, 1.0 / n_actions)

    def act(self):
        self.p = _softmin(self.L, self.eta)
        return self.p

    def update(self, obs):
        self.L[obs.action] += obs.loss / self.p[obs.action]
        self.t += 1


class UCB(Agent):
    """UCB1 on losses (Auer et al. 2002): each arm once, then argmin_a mean_a − √(2 ln t / n_a)."""

    name = "ucb"
    needs = "bandit"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.n = np.zeros(n_actions)
        self.s = np.zeros(n_actions)

    def act(self):
        if (self.n == 0).any():
            return _one_hot(int(np.argmin(self.n)), self.K)
        index = self.s / self.n - np.sqrt(2 * math.log(self.t + 1) / self.n)
        return _one_hot(int(np.argmin(index)), self.K)

    def update(self, obs):
        self.n[obs.action] += 1
        self.s[obs.action] += obs.loss
        self.t += 1


class Thompson(Agent):
    """Beta–Bernoulli Thompson sampling on rewards 1 − loss; a loss in (0, 1) is turned into a Bernoulli
    reward draw first (Agrawal & Goyal 2012). Plays the arm of the largest posterior draw."""

    name = "thompson"
    needs = "bandit"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.a = np.ones(n_actions)
        self.b = np.ones(n_actions)

    def act(self):
        return _one_hot(int(np.argmax(self.rng.beta(self.a, self.b))), self.K)

    def update(self, obs):
        reward = float(self.rng.uniform() < 1.0 - obs.loss)
        self.a[obs.action] += reward
        self.b[obs.action] += 1.0 - reward
        self.t += 1


# ------------------------------------------------------------------------------------------------- dueling bandits


class _DuelAgent(Agent):
    needs = "duel"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.W = np.zeros((n_actions, n_actions))  # W[i, j]: times i beat j

    def update(self, obs):
        i, j, i_won = obs.duel
        if i != j:
            self.W[i, j] += i_won
            self.W[j, i] += not i_won
        self.t += 1

    def _ucb(self, alpha: float) -> np.ndarray:
        N = self.W + self.W.T
        with np.errstate(divide="ignore", invalid="ignore"):
            U = np.where(
                N > 0, self.W / np.maximum(N, 1) + np.sqrt(alpha * math.log(self.t + 1) / np.maximum(N, 1)), 1.0
            )
        np.fill_diagonal(U, 0.5)
        return U


class RUCB(_DuelAgent):
    """Relative upper confidence bound (Zoghi et al. 2014), α = 0.51: the candidate c is drawn among arms whose
    optimistic win probability is ≥ ½ against all others, its opponent
    is argmax_j U[j, c]; the hypothesised best is kept as the candidate with probability ½ while it stays in the
    candidate set. Regret O(K log T) on a Condorcet dueling bandit (Zoghi et al.)."""

    name = "rucb"

    def reset(self, n_actions, horizon, rng):
        super().reset(n_actions, horizon, rng)
        self.best: int | None = None

    def act(self):
        U = self._ucb(0.51)
        C = [c for c in range(self.K) if (U[c] >= 0.5).all()]
        if not C:
            c = int(self.rng.integers(self.K))
        elif self.best in C and self.rng.uniform() < 0.5:
            c = self.best
        else:
            c = int(self.rng.choice(C))
        if len(C) == 1:
            self.best = C[0]
        col = U[:, c].copy()
        col[c] = 0.5
        d = int(self.rng.choice(np.flatnonzero(col == col.max())))
        return _one_hot(c, self.K), _one_hot(d, self.K)


class DoubleThompson(_DuelAgent):
    """Double Thompson sampling (Wu & Liu 2016), α = 0.51: the first arm maximises the Copeland score under one
    posterior draw of P among the arms with the best optimistic Copeland score; the second maximises a fresh
    draw of P(i ≻ first) among arms not surely beaten by it."""

    name = "dts"

    def act(self):
        K = self.K
        U = self._ucb(0.51)
        L = 1.0 - U.T  # lower bounds: L[i, j] = 1 − U[j, i]
        np.fill_diagonal(L, 0.5)
        upper_copeland = ((U > 0.5) & ~np.eye(K, dtype=bool)).sum(1)
        cands = np.flatnonzero(upper_copeland == upper_copeland.max())
        theta = np.full((K, K), 0.5)
        for i in range(K):
            for j in range(i + 1, K):
                theta[i, j] = self.rng.beta(self.W[i, j] + 1, self.W[j, i] + 1)
                theta[j, i] = 1 - theta[i, j]
        score = ((theta > 0.5) & ~np.eye(K, dtype=bool)).sum(1)[cands]
        first = int(self.rng.choice(cands[score == score.max()]))
        draw = np.array(
            [self.rng.beta(self.W[i, first] + 1, self.W[first, i] + 1) if i != first else 0.5 for i in range(K)]
        )
        draw[L[:, first] > 0.5] = -1.0  # DTS draws the second arm among those with lower bound l(i, first) ≤ ½
        draw[first] = 0.5
        second = int(self.rng.choice(np.flatnonzero(draw == draw.max())))
        return _one_hot(first, K), _one_hot(second, K)


#: name → (factory, one-line description).
AGENTS: dict[str, tuple[Callable[[], Agent], str]] = {
    "hedge": (Hedge, "Hedge / multiplicative weights, η = √(8 ln K / T)"),
    "ftrl": (FTRL, "FTRL, Euclidean regulariser (projected)"),
    "ftpl": (FTPL, "follow the perturbed leader, uniform perturbations"),
    "ftl": (FTL, "follow the leader (not no-regret)"),
    "exp3": (EXP3, "EXP3, importance-weighted losses"),
    "ucb": (UCB, "UCB1"),
    "thompson": (Thompson, "Beta-Bernoulli Thompson sampling"),
    "rucb": (RUCB, "relative UCB (dueling)"),
    "dts": (DoubleThompson, "double Thompson sampling (dueling)"),
    "uniform": (Uniform, "uniform random play"),
}

#: Which agent needs run in which environment family.
COMPATIBLE = {
    "experts": {"full", "bandit", "any", "lm"},
    "game": {"full", "bandit", "any", "lm"},
    "bandit": {"bandit", "any", "lm"},
    "duel": {"duel", "any", "lm"},
}

_NEEDS_TEXT = {"full": "full-information feedback", "bandit": "a loss for its action", "duel": "duel outcomes"}


def agent_names() -> list[str]:
    return [*AGENTS, "llm", "llm_summary", "regret_transformer"]


def check_agent(name: str, family: str, needs: str) -> None:
    """An agent that cannot learn from what the environment reveals is an error before the run starts."""
    if needs not in COMPATIBLE[family]:
        gives = {"bandit": "bandit feedback", "duel": "duel outcomes only"}.get(family, "full information")
        raise ConfigError(
            f"agent '{name}' needs {_NEEDS_TEXT[needs]}; '{family}' environments give {gives}", field="agents"
        )
