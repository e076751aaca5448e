"""Finite, seeded data from a preference game: labelled pairs (optionally from a population of annotators
who each belong to a user group), and offline training of a pair objective on them.

Sampling: x ∼ ρ; two *distinct* actions y ≠ y' ∼ μ(·|x) (identical pairs carry no preference); the
annotator labels y ≻ y' with probability P̃(y ≻ y'|x) (:meth:`PreferenceGame.annotator_pref`, so label
noise and length bias apply). Everything is drawn from one ``numpy.random.Generator(seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..objectives import get_objective
from ..objectives.base import PairInputs
from ..objectives.game_inputs import IterativePairInputs
from .expectations import t
from .games import PreferenceGame
from .policy import TablePolicy, fit

__all__ = ["PairSample", "iterate_on_samples", "sample_group_pairs", "sample_pairs", "train_on_sample"]


@dataclass
class PairSample:
    """n labelled pairs as index tensors: context ``x``, ``chosen`` and ``rejected`` actions, and (for
    annotator populations) ``annotator`` ids and their true ``group``."""

    x: Tensor
    chosen: Tensor
    rejected: Tensor
    annotator: Tensor | None = None
    group: Tensor | None = None

    def __len__(self) -> int:
        return int(self.x.numel())

    def inputs(self, logp: Tensor, ref: Tensor | None, lengths: np.ndarray | None = None) -> PairInputs:
        """Gather a policy's (X, K) log-prob table (and the reference's) into :class:`PairInputs`."""
        lens = None if lengths is None else t(lengths)
        return PairInputs(
            policy_chosen=logp[self.x, self.chosen],
            policy_rejected=logp[self.x, self.rejected],
            ref_chosen=None if ref is None else ref[self.x, self.chosen],
            ref_rejected=None if ref is None else ref[self.x, self.rejected],
            chosen_len=None if lens is None else lens[self.x, self.chosen],
            rejected_len=None if lens is None else lens[self.x, self.rejected],
        )


def _draw_pairs(rng: np.random.Generator, game: PreferenceGame, mu: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    if n < 1:
        raise ConfigError(f"need at least one pair, got {n}", field="n")
    x = rng.choice(game.n_contexts, size=n, p=game.context_probs)
    cdf = np.cumsum(mu, axis=-1)
    y = np.minimum((rng.random(n)[:, None] > cdf[x]).sum(-1), game.n_actions - 1)
    # y' ∼ μ(·|x) conditioned on y' ≠ y: renormalise μ without y.
    rest = mu[x].copy()
    rest[np.arange(n), y] = 0.0
    rest /= rest.sum(-1, keepdims=True)
    y2 = np.minimum((rng.random(n)[:, None] > np.cumsum(rest, axis=-1)).sum(-1), game.n_actions - 1)
    return x, y, y2


def _label(x: np.ndarray, y: np.ndarray, y2: np.ndarray, pref: np.ndarray, u: np.ndarray) -> tuple[Tensor, Tensor]:
    first_wins = u < pref[x, y, y2]
    chosen = np.where(first_wins, y, y2)
    rejected = np.where(first_wins, y2, y)
    return torch.as_tensor(chosen), torch.as_tensor(rejected)


def sample_pairs(game: PreferenceGame, n: int, *, seed: int, mu: np.ndarray | None = None) -> PairSample:
    """``n`` pairs from μ (default π_ref) labelled by the game's annotators (noise and length bias included)."""
    rng = np.random.default_rng(seed)
    mu = game.ref if mu is None else np.asarray(mu, dtype=np.float64)
    x, y, y2 = _draw_pairs(rng, game, mu, n)
    chosen, rejected = _label(x, y, y2, game.annotator_pref(), rng.random(n))
    return PairSample(torch.as_tensor(x), chosen, rejected)


def sample_group_pairs(
    game: PreferenceGame,
    n_annotators: int,
    pairs_per_annotator: int,
    *,
    seed: int,
    mu: np.ndarray | None = None,
) -> PairSample:
    """A population of annotators: each draws a group g ∼ w (the game's group weights) and labels
    ``pairs_per_annotator`` pairs with that group's Bradley–Terry preference (as annotated: noise applies)."""
    if game.group_rewards is None:
        raise ConfigError(f"game '{game.name}' has no user groups", field="game")
    rng = np.random.default_rng(seed)
    mu = game.ref if mu is None else np.asarray(mu, dtype=np.float64)
    groups = rng.choice(game.n_groups, size=n_annotators, p=game.group_weights)
    n = n_annotators * pairs_per_annotator
    annotator = np.repeat(np.arange(n_annotators), pairs_per_annotator)
    x, y, y2 = _draw_pairs(rng, game, mu, n)
    prefs = np.stack([game.group_pref(g, annotated=True) for g in range(game.n_groups)])  # (G, X, K, K)
    first_wins = rng.random(n) < prefs[groups[annotator], x, y, y2]
    chosen, rejected = np.where(first_wins, y, y2), np.where(first_wins, y2, y)
    return PairSample(
        torch.as_tensor(x),
        torch.as_tensor(chosen),
        torch.as_tensor(rejected),
        annotator=torch.as_tensor(annotator),
        group=torch.as_tensor(groups[annotator]),
    )


def train_on_sample(
    name: str,
    game: PreferenceGame,
    sample: PairSample,
    *,
    beta: float = 0.1,
    steps: int = 30,
    **params: float,
) -> np.ndarray:
    """Minimise a registered pair objective's empirical loss on ``sample`` (L-BFGS on the logit table,
    reference π_ref, starting from π_ref); returns the fitted (X, K) policy."""
    spec = get_objective(name)
    if "beta" in spec.params.__dataclass_fields__:
        params = {"beta": beta, **params}
    hp = spec.make_params(**params)
    ref = t(np.log(game.ref))
    pol = TablePolicy(game.ref)
    fit(pol, lambda lp: spec(sample.inputs(lp, ref, game.lengths), hp)[0], optimizer="lbfgs", steps=steps)
    return pol.probs()


def _estimate_win_rates(
    rng: np.random.Generator,
    game: PreferenceGame,
    policy: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    opponents: int,
) -> Tensor:
    """P̂(y ≻ π|x): the fraction of ``opponents`` fresh samples y' ∼ π(·|x) that the annotator ranks below y
    (SPPO's PairRM estimate, DNO's r_t)."""
    cdf = np.cumsum(policy, axis=-1)[x]  # (n, K)
    draws = np.minimum((rng.random((len(x), opponents, 1)) > cdf[:, None, :]).sum(-1), game.n_actions - 1)
    pref = game.annotator_pref()
    wins = rng.random((len(x), opponents)) < pref[x[:, None], y[:, None], draws]
    return torch.as_tensor(wins.mean(1))


def iterate_on_samples(
    name: str,
    game: PreferenceGame,
    *,
    beta: float = 0.1,
    eta: float = 1.0,
    iterations: int = 10,
    n_pairs: int = 2000,
    opponents: int = 8,
    seed: int = 0,
    steps: int = 20,
) -> list[np.ndarray]:
    """Iterative self-play on finite data: at iteration t draw ``n_pairs`` i.i.d. pairs from π_t, have them
    judged (INPO: labels; SPPO, DNO: win rates estimated from ``opponents`` judged samples of π_t), and
    minimise the registered objective's empirical loss with π_t as the anchor. Returns π_0, …, π_T."""
    if name not in ("inpo", "sppo", "dno"):
        raise ConfigError(f"no sampled iterative schedule for '{name}' (known: inpo, sppo, dno)", field="algorithm")
    spec = get_objective(name)
    hp = {"inpo": {"beta": beta, "eta": eta}, "sppo": {"beta": 1.0 / eta}, "dno": {"eta": 1.0 / eta}}[name]
    params = spec.make_params(**hp)
    rng = np.random.default_rng(seed)
    log_ref = t(np.log(game.ref))
    pol = TablePolicy(game.ref)
    history = [pol.probs()]
    for _ in range(iterations):
        pi_t = history[-1]
        anchor = t(np.log(pi_t))
        x = rng.choice(game.n_contexts, size=n_pairs, p=game.context_probs)
        cdf = np.cumsum(pi_t, axis=-1)[x]
        y1, y2 = (np.minimum((rng.random((n_pairs, 1)) > cdf).sum(-1), game.n_actions - 1) for _ in range(2))
        if name == "inpo":
            y1, y2 = _label(x, y1, y2, game.annotator_pref(), rng.random(n_pairs))
            win1 = win2 = None
        else:
            win1 = _estimate_win_rates(rng, game, pi_t, x, y1, opponents)
            win2 = _estimate_win_rates(rng, game, pi_t, x, y2, opponents)
        xs, a, b = torch.as_tensor(x), torch.as_tensor(y1), torch.as_tensor(y2)

        def loss_fn(lp: Tensor, xs=xs, a=a, b=b, anchor=anchor, win1=win1, win2=win2) -> Tensor:
            ref_w, ref_l = (anchor[xs, a], anchor[xs, b]) if name == "sppo" else (log_ref[xs, a], log_ref[xs, b])
            inputs = IterativePairInputs(
                policy_chosen=lp[xs, a],
                policy_rejected=lp[xs, b],
                ref_chosen=ref_w,
                ref_rejected=ref_l,
                anchor_chosen=anchor[xs, a],
                anchor_rejected=anchor[xs, b],
                win_chosen=win1,
                win_rejected=win2,
                chosen_winrate=win1,
                rejected_winrate=win2,
            )
            return spec(inputs, params)[0]

        fit(pol, loss_fn, optimizer="lbfgs", steps=steps)
        history.append(pol.probs())
    return history
