"""Dueling bandits: each round two arms duel and the agent sees only which won (:class:`DuelEnv`, a preference
matrix P). Regret is against the Condorcet winner when there is one (Yue et al. 2012), else Copeland regret;
:func:`duel_env` builds transitive and intransitive matrices, the latter from the exact testbed's games.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .env_common import DUEL_KINDS, check_actions, check_horizon, unknown_name


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
        raise unknown_name("duel kind", kind, DUEL_KINDS, "env")
    return DuelEnv(f"duel:{kind}", P, T, description=desc)
