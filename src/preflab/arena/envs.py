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

Environment names are ``family:kind`` (``experts:adversarial``); a bare family takes its first kind. Each family
is a module of its own (:mod:`~preflab.arena.loss_envs`, :mod:`~preflab.arena.duel_envs`,
:mod:`~preflab.arena.matrix_games`; their names and checks in :mod:`~preflab.arena.env_common`); this module
builds one by name (:func:`make_env`) and re-exports them all.
"""

from __future__ import annotations

from .duel_envs import DuelEnv, condorcet_winner, copeland_scores, duel_env, with_losers
from .env_common import (
    BANDIT_KINDS,
    DUEL_KINDS,
    ENV_KINDS,
    EXPERT_KINDS,
    FEEDBACK,
    GAME_KINDS,
    check_actions,
    check_horizon,
    check_prob,
    parse_env_name,
)
from .loss_envs import EXPERT_DESCRIPTIONS, LossEnv, bandit_env, experts_env
from .matrix_games import MatrixGame, game_env

__all__ = [
    "BANDIT_KINDS",
    "DUEL_KINDS",
    "ENV_KINDS",
    "EXPERT_DESCRIPTIONS",
    "EXPERT_KINDS",
    "FEEDBACK",
    "GAME_KINDS",
    "DuelEnv",
    "LossEnv",
    "MatrixGame",
    "bandit_env",
    "check_actions",
    "check_horizon",
    "check_prob",
    "condorcet_winner",
    "copeland_scores",
    "duel_env",
    "experts_env",
    "game_env",
    "make_env",
    "parse_env_name",
    "with_losers",
]


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
