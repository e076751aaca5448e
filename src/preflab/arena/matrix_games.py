"""Repeated two-player matrix games (:class:`MatrixGame`): each player sees the expected loss of its actions
against the other's mixed strategy, and the average joint play is measured by its distance to a coarse
correlated equilibrium (the CCE gap; Hart & Mas-Colell 2000). :func:`game_env` builds rock–paper–scissors,
coordination, the prisoner's dilemma, random and given games.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .env_common import GAME_KINDS, check_actions, check_horizon, unknown_name


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
        raise unknown_name("game kind", kind, GAME_KINDS, "env")
    return MatrixGame(f"game:{kind}", row, col, T, description=desc)
