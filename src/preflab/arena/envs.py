"""Online-learning environments with exact regret bookkeeping.

Every environment has K actions and a horizon T. Each round t the agent commits to a probability vector
p_t over the actions (a deterministic agent gives a one-hot vector); the environment then reveals a loss
vector ℓ_t ∈ [0, 1]^K, of which the agent sees all (``feedback == "full"``), only the sampled action's entry
(``"bandit"``), or, in a dueling bandit, only which of two arms won (``"duel"``). Regret is bookkept in
expectation over the agent's own randomisation, against the realised losses (:mod:`preflab.arena.metrics`):

- experts and bandits: cost_t = ⟨p_t, ℓ_t⟩ (bandits: ℓ_t is the arm means μ, i.e. pseudo-regret), the best
  fixed action in hindsight min_a Σ_t ℓ_t,a, and the per-round best min_a ℓ_t,a (dynamic regret);
- dueling bandits (Yue et al. 2012): two arms i ~ p_t, j ~ q_t duel; the round's regret is
  (Σ_i p_i ε(a*, i) + Σ_j q_j ε(a*, j)) / 2 with ε(a, b) = P(a ≻ b) − ½ and a* the Condorcet winner, or,
  for intransitive matrices without one, Copeland regret (the normalised Copeland score of the best arm
  minus the pair's mean score);
- repeated two-player matrix games: each player i sees the expected loss vector of its actions against the
  other's mixed strategy (full information), and the distance of the average joint play to a coarse
  correlated equilibrium is the CCE gap (equal to the larger of the two players' average regrets).

Environment names are ``family:kind`` (``experts:adversarial``); a bare family takes its first kind.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError

EXPERT_KINDS = ("adversarial", "stochastic", "nonstationary", "adaptive", "ftl_trap", "lazy_trap")
BANDIT_KINDS = ("bernoulli", "close")
DUEL_KINDS = ("condorcet", "cyclic", "rps", "random")
GAME_KINDS = ("rps", "coordination", "prisoners", "random", "custom")
ENV_KINDS: dict[str, tuple[str, ...]] = {
    "experts": EXPERT_KINDS,
    "bandit": BANDIT_KINDS,
    "duel": DUEL_KINDS,
    "game": GAME_KINDS,
}
FEEDBACK = {"experts": "full", "bandit": "bandit", "duel": "duel", "game": "full"}


def _unknown(what: str, name: str, known: tuple[str, ...] | list[str], field: str) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {what} '{name}'{hint} (known: {', '.join(known)})", field=field)


def parse_env_name(name: str) -> tuple[str, str]:
    """``"experts:stochastic"`` → (``experts``, ``stochastic``); a bare family gets its first kind."""
    family, _, kind = name.strip().partition(":")
    if family not in ENV_KINDS:
        raise _unknown("environment", family, list(ENV_KINDS), "env")
    kinds = ENV_KINDS[family]
    kind = kind or kinds[0]
    if kind not in kinds:
        raise _unknown(f"{family} kind", kind, kinds, "env")
    return family, kind


def check_horizon(horizon: int) -> int:
    if not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(f"the horizon must be a positive number of rounds (got {horizon!r})", field="horizon")
    return int(horizon)


def check_actions(n_actions: int, minimum: int = 2) -> int:
    if n_actions < minimum:
        raise ConfigError(f"need at least {minimum} actions (got {n_actions})", field="n_actions")
    return int(n_actions)


def check_prob(p: np.ndarray, n: int, who: str = "agent") -> np.ndarray:
    """A probability vector of length n (a bug in an agent fails here, not as wrong regret)."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n,) or not np.all(np.isfinite(p)) or (p < -1e-9).any() or abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"{who} returned {p!r}, not a probability vector over {n} actions")
    p = np.clip(p, 0.0, None)
    return p / p.sum()


# ---------------------------------------------------------------------------------------------- experts / bandits


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
    raise _unknown("experts kind", kind, EXPERT_KINDS, "env")


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
        raise _unknown("bandit kind", kind, BANDIT_KINDS, "env")
    draws = (rng.uniform(0, 1, (T, K)) < mu).astype(np.float64)
    return LossEnv(f"bandit:{kind}", "bandit", K, T, losses=draws, means=mu, description=desc)


# ---------------------------------------------------------------------------------------------------- dueling


def condorcet_winner(P: np.ndarray) -> int | None:
    """The arm that beats every other with probability > ½, or None."""
    K = P.shape[0]
    for i in range(K):
        if all(P[i, j] > 0.5 for j in range(K) if j != i):
            return i
    return None


def copeland_scores(P: np.ndarray) -> np.ndarray:
    """Normalised Copeland scores: the fraction of other arms each arm beats (P > ½)."""
    K = P.shape[0]
    wins = (P > 0.5).sum(axis=1) - (np.diag(P) > 0.5)
    return wins / (K - 1)


@dataclass
class DuelEnv:
    """A dueling bandit over a preference matrix P (P[i, j] = P(i beats j), P + Pᵀ = 1)."""

    name: str
    pref: np.ndarray
    horizon: int
    description: str = ""
    family: str = "duel"
    winner: int | None = field(init=False)
    round_regret: np.ndarray = field(init=False)
    """(K,) the regret of playing arm i as one side of the duel (Condorcet: ε(a*, i); else Copeland)."""

    def __post_init__(self) -> None:
        P = self.pref
        if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
            raise ConfigError(f"a preference matrix must be (K, K) with K >= 2, got shape {P.shape}", field="pref")
        if not np.allclose(P + P.T, 1.0, atol=1e-8) or (P < 0).any() or (P > 1).any():
            raise ConfigError("preference matrix entries must lie in [0, 1] with P + Pᵀ = 1", field="pref")
        self.winner = condorcet_winner(P)
        if self.winner is not None:
            self.round_regret = P[self.winner] - 0.5
            self.regret_kind = "condorcet"
        else:
            c = copeland_scores(P)
            self.round_regret = c.max() - c
            self.regret_kind = "copeland"

    @property
    def n_actions(self) -> int:
        return self.pref.shape[0]

    @property
    def feedback(self) -> str:
        return "duel"


def with_losers(core: np.ndarray, extra: int, p_win: float = 0.8) -> np.ndarray:
    """``core`` (an intransitive tournament, whose arms tie on Copeland score) plus ``extra`` arms that every
    core arm beats with probability ``p_win`` (ties among themselves): the Copeland winners are the core arms,
    and Copeland regret measures how often the dominated arms are played."""
    k = core.shape[0]
    P = np.full((k + extra, k + extra), 0.5)
    P[:k, :k] = core
    P[:k, k:], P[k:, :k] = p_win, 1.0 - p_win
    return P


def duel_env(kind: str, n_actions: int, horizon: int, seed: int, pref=None) -> DuelEnv:
    """``condorcet``: a Bradley–Terry matrix with utilities evenly spread in [0, 2] (a total order, arm with
    the top utility the Condorcet winner); ``cyclic`` / ``rps``: the intransitive matrices of the exact testbed
    (:func:`preflab.testbeds.games.cyclic_game`, the weighted :func:`~preflab.testbeds.games.rps_game`) plus
    dominated arms (:func:`with_losers`), no Condorcet winner, so regret is Copeland regret; ``random``: the
    testbed's random general game (seeded;
    usually intransitive)."""
    from scipy.special import expit

    from ..testbeds.games import cyclic_game, random_game, rps_game

    T = check_horizon(horizon)
    rng = np.random.default_rng(seed)
    if pref is not None:
        P, desc = np.asarray(pref, dtype=np.float64), "given matrix"
    elif kind == "condorcet":
        u = rng.permutation(np.linspace(0.0, 2.0, check_actions(n_actions)))
        P, desc = expit(u[:, None] - u[None, :]), "Bradley–Terry, utilities evenly spread in [0, 2]"
    elif kind == "cyclic":
        extra = max(1, n_actions - 3)
        P = with_losers(cyclic_game(3, strength=0.8).pref[0], extra)
        desc = f"cyclic 3-tournament (testbed), strength 0.8, plus {extra} dominated arm(s)"
    elif kind == "rps":
        P = with_losers(rps_game(0.2, 0.5, 1.0).pref[0], 1)
        desc = "weighted rock-paper-scissors 0.2/0.5/1.0 (testbed) plus 1 dominated arm"
    elif kind == "random":
        P, desc = random_game(seed, n_contexts=1, n_actions=max(3, n_actions)).pref[0], "testbed random game"
    else:
        raise _unknown("duel kind", kind, DUEL_KINDS, "env")
    return DuelEnv(f"duel:{kind}", P, T, description=desc)


# --------------------------------------------------------------------------------------------------- matrix games


@dataclass
class MatrixGame:
    """A repeated two-player game: ``row_loss[i, j]`` / ``col_loss[i, j]`` are the losses of the row / column
    player when they play i and j (both in [0, 1])."""

    name: str
    row_loss: np.ndarray
    col_loss: np.ndarray
    horizon: int
    description: str = ""
    family: str = "game"

    def __post_init__(self) -> None:
        for key, m in (("row", self.row_loss), ("col", self.col_loss)):
            if m.ndim != 2 or min(m.shape) < 2:
                raise ConfigError(
                    f"a payoff matrix must be 2-D with >= 2 actions per player, got shape {m.shape}",
                    field=f"payoff.{key}",
                )
            if not np.all(np.isfinite(m)) or (m < 0).any() or (m > 1).any():
                raise ConfigError("losses must be finite numbers in [0, 1]", field=f"payoff.{key}")
        if self.row_loss.shape != self.col_loss.shape:
            raise ConfigError(
                f"row and column payoff matrices differ in shape: {self.row_loss.shape} vs {self.col_loss.shape}",
                field="payoff",
            )

    @property
    def n_actions(self) -> tuple[int, int]:
        return self.row_loss.shape

    @property
    def feedback(self) -> str:
        return "full"

    def loss_vectors(self, p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each player's expected loss per own action against the other's mixed strategy."""
        return self.row_loss @ q, p @ self.col_loss


def _payoff_from_utils(u_row: np.ndarray, u_col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Utilities → losses in [0, 1] by one affine map shared by both players (best = 0, worst = 1)."""
    lo, hi = min(u_row.min(), u_col.min()), max(u_row.max(), u_col.max())
    scale = hi - lo if hi > lo else 1.0
    return (hi - u_row) / scale, (hi - u_col) / scale


def game_env(kind: str, horizon: int, seed: int, payoff: dict | None = None, n_actions: int = 3) -> MatrixGame:
    """``rps``: rock–paper–scissors (zero-sum; the unique Nash equilibrium and every CCE marginal is uniform);
    ``coordination``: both players gain 1 when they pick the same action (2 actions; (0, 0) pays 1, (1, 1) pays
    0.5); ``prisoners``: the prisoner's dilemma (payoffs 3/0/5/1; defection dominates); ``random``: Gaussian
    utilities, n_actions × n_actions; ``custom``: ``payoff = {"row": [[...]], "col": [[...]]}`` losses."""
    T = check_horizon(horizon)
    if kind == "custom" or payoff is not None:
        if not isinstance(payoff, dict) or not {"row", "col"} <= set(payoff):
            raise ConfigError('a custom game needs a payoff {"row": [[...]], "col": [[...]]} of losses', field="payoff")
        try:
            row, col = (np.asarray(payoff[k], dtype=np.float64) for k in ("row", "col"))
        except (TypeError, ValueError):
            raise ConfigError("payoff matrices must be rectangular lists of numbers", field="payoff") from None
        return MatrixGame("game:custom", row, col, T, description="given payoff")
    if kind == "rps":
        u = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
        row, col = _payoff_from_utils(u, -u)
        desc = "rock-paper-scissors, zero-sum"
    elif kind == "coordination":
        u = np.array([[1.0, 0.0], [0.0, 0.5]])
        row, col = _payoff_from_utils(u, u)
        desc = "coordination: (0,0) pays 1, (1,1) pays 0.5, mismatch 0"
    elif kind == "prisoners":
        u_row = np.array([[3.0, 0.0], [5.0, 1.0]])
        row, col = _payoff_from_utils(u_row, u_row.T)
        desc = "prisoner's dilemma (cooperate=0, defect=1)"
    elif kind == "random":
        rng = np.random.default_rng(seed)
        K = check_actions(n_actions)
        row, col = _payoff_from_utils(rng.normal(size=(K, K)), rng.normal(size=(K, K)))
        desc = f"random general-sum {K}x{K}"
    else:
        raise _unknown("game kind", kind, GAME_KINDS, "env")
    return MatrixGame(f"game:{kind}", row, col, T, description=desc)


def make_env(name: str, *, horizon: int, seed: int, n_actions: int = 3, payoff: dict | None = None):
    """An environment by name (``experts:stochastic``, ``bandit``, ``duel:cyclic``, ``game:rps``)."""
    check_horizon(horizon)
    family, kind = parse_env_name(name)
    if family == "experts":
        return experts_env(kind, n_actions, horizon, seed)
    if family == "bandit":
        return bandit_env(kind, n_actions, horizon, seed)
    if family == "duel":
        return duel_env(kind, n_actions, horizon, seed)
    return game_env(kind, horizon, seed, payoff=payoff, n_actions=n_actions)
