"""What every regret-arena environment shares: the ``family:kind`` names (:data:`ENV_KINDS`), the feedback
each family gives (:data:`FEEDBACK`), :func:`parse_env_name`, and the checks of a horizon, an action count and
an agent's probability vector. The environments themselves are in :mod:`preflab.arena.loss_envs` (experts,
bandits), :mod:`preflab.arena.duel_envs` (dueling bandits) and :mod:`preflab.arena.matrix_games` (repeated
games); :func:`preflab.arena.envs.make_env` builds one by name.
"""

from __future__ import annotations

import difflib

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


def unknown_name(what: str, name: str, known: tuple[str, ...] | list[str], field: str) -> ConfigError:
    """A one-line ConfigError for an unknown ``name`` of ``what``, naming the closest known one."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {what} '{name}'{hint} (known: {', '.join(known)})", field=field)


def parse_env_name(name: str) -> tuple[str, str]:
    """``"experts:stochastic"`` → (``experts``, ``stochastic``); a bare family gets its first kind."""
    family, _, kind = name.strip().partition(":")
    if family not in ENV_KINDS:
        raise unknown_name("environment", family, list(ENV_KINDS), "env")
    kinds = ENV_KINDS[family]
    kind = kind or kinds[0]
    if kind not in kinds:
        raise unknown_name(f"{family} kind", kind, kinds, "env")
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
