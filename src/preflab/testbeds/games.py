"""Tabular preference games: contexts × K actions, a reference policy and a ground-truth preference.

A :class:`PreferenceGame` holds, per context x, the reference policy π_ref(·|x) and the true preference
matrix P(y ≻ y' | x) with P + Pᵀ = 1 (diagonal ½). The truth comes from one of

- Bradley–Terry rewards r(x, y): P(y ≻ y') = σ(r(y) − r(y')) (:func:`bt_game`);
- an arbitrary matrix, cyclic ones included (:func:`preference_game`, :func:`cyclic_game`, :func:`rps_game`);
- a mixture of user groups g with population weights w_g, each Bradley–Terry with its own rewards r_g:
  P = Σ_g w_g σ(r_g(y) − r_g(y')) (:func:`mixture_game`, :func:`two_group_game`).

Annotators see a distorted preference (:meth:`PreferenceGame.annotator_pref`): a length-like bias λ shifts
the preference logit by λ·(ℓ(y) − ℓ(y')) for a per-action "length" feature ℓ(x, y), and each label is then
flipped with probability ε: P̃ = ε + (1 − 2ε)·σ(logit P + λ Δℓ). Solvers and metrics use the true P; data
is drawn from P̃. Arrays are float64 numpy; contexts are weighted by ``context_probs`` ρ(x).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit, logit

from ..errors import ConfigError

__all__ = [
    "GAME_NAMES",
    "PreferenceGame",
    "bt_game",
    "cyclic_game",
    "make_game",
    "mixture_game",
    "preference_game",
    "random_game",
    "rps_game",
    "two_group_game",
]

_ATOL = 1e-9


def _as_policy(ref: ArrayLike | None, n_contexts: int, n_actions: int, name: str = "ref") -> np.ndarray:
    """A (X, K) row-stochastic table; None = uniform; a (K,) vector is shared by all contexts."""
    if ref is None:
        return np.full((n_contexts, n_actions), 1.0 / n_actions)
    arr = np.asarray(ref, dtype=np.float64)
    if arr.ndim == 1:
        arr = np.broadcast_to(arr, (n_contexts, arr.shape[0])).copy()
    if arr.shape != (n_contexts, n_actions):
        raise ConfigError(f"expected shape {(n_contexts, n_actions)}, got {arr.shape}", field=name)
    if (arr <= 0).any() or not np.allclose(arr.sum(-1), 1.0, atol=1e-6):
        raise ConfigError("rows must be strictly positive probabilities summing to 1", field=name)
    return arr / arr.sum(-1, keepdims=True)


@dataclass(frozen=True)
class PreferenceGame:
    """A preference game. Shapes: X contexts, K actions, G groups.

    ref: (X, K) reference policy π_ref. pref: (X, K, K) true P(y ≻ y' | x). context_probs: (X,) ρ(x).
    rewards: (X, K) Bradley–Terry rewards when the truth is BT (else None). group_rewards: (G, X, K) and
    group_weights: (G,) for a mixture of user groups. lengths: (X, K) length-like feature ℓ(x, y).
    length_bias: λ, the annotators' logit shift per unit of length difference. flip_rate: ε, label noise.
    """

    name: str
    ref: np.ndarray
    pref: np.ndarray
    context_probs: np.ndarray
    rewards: np.ndarray | None = None
    group_rewards: np.ndarray | None = None
    group_weights: np.ndarray | None = None
    lengths: np.ndarray = field(default=None)  # type: ignore[assignment]
    length_bias: float = 0.0
    flip_rate: float = 0.0

    def __post_init__(self) -> None:
        X, K = self.ref.shape
        if self.lengths is None:
            object.__setattr__(self, "lengths", np.ones((X, K)))
        if self.pref.shape != (X, K, K):
            raise ConfigError(f"expected shape {(X, K, K)}, got {self.pref.shape}", field="pref")
        if (self.pref < -_ATOL).any() or (self.pref > 1 + _ATOL).any():
            raise ConfigError("preference probabilities must lie in [0, 1]", field="pref")
        if not np.allclose(self.pref + self.pref.transpose(0, 2, 1), 1.0, atol=1e-8):
            raise ConfigError("P(y ≻ y') + P(y' ≻ y) must equal 1 (diagonal ½)", field="pref")
        if self.context_probs.shape != (X,) or not np.isclose(self.context_probs.sum(), 1.0):
            raise ConfigError("context probabilities must be a (X,) vector summing to 1", field="context_probs")
        if not 0.0 <= self.flip_rate < 0.5:
            raise ConfigError(f"flip rate must lie in [0, 0.5), got {self.flip_rate}", field="flip_rate")
        if self.lengths.shape != (X, K):
            raise ConfigError(f"expected shape {(X, K)}, got {self.lengths.shape}", field="lengths")

    @property
    def n_contexts(self) -> int:
        return self.ref.shape[0]

    @property
    def n_actions(self) -> int:
        return self.ref.shape[1]

    @property
    def n_groups(self) -> int:
        return 0 if self.group_rewards is None else self.group_rewards.shape[0]

    @property
    def is_bradley_terry(self) -> bool:
        return self.rewards is not None

    def _distort(self, pref: np.ndarray) -> np.ndarray:
        if self.length_bias:
            diff = self.lengths[:, :, None] - self.lengths[:, None, :]
            with np.errstate(divide="ignore"):
                pref = expit(logit(np.clip(pref, 0.0, 1.0)) + self.length_bias * diff)
        return self.flip_rate + (1.0 - 2.0 * self.flip_rate) * pref

    def annotator_pref(self) -> np.ndarray:
        """(X, K, K): the probability that an annotator labels y ≻ y' (length bias, then label flips)."""
        return self._distort(self.pref)

    def group_pref(self, group: int, *, annotated: bool = False) -> np.ndarray:
        """(X, K, K): group ``group``'s Bradley–Terry preference (distorted as annotators see it if asked)."""
        if self.group_rewards is None:
            raise ConfigError(f"game '{self.name}' has no user groups", field="group")
        r = self.group_rewards[group]
        pref = expit(r[:, :, None] - r[:, None, :])
        return self._distort(pref) if annotated else pref

    def with_noise(self, flip_rate: float) -> PreferenceGame:
        """The same game, annotated with labels flipped at rate ε."""
        return replace(self, flip_rate=float(flip_rate))

    def with_length_bias(self, bias: float, lengths: ArrayLike | None = None) -> PreferenceGame:
        """The same game, annotated by raters whose preference logit gains ``bias`` per unit of length."""
        new_lengths = self.lengths if lengths is None else np.asarray(lengths, dtype=np.float64)
        if new_lengths.ndim == 1:
            new_lengths = np.broadcast_to(new_lengths, self.ref.shape).copy()
        return replace(self, length_bias=float(bias), lengths=new_lengths)

    def with_ref(self, ref: ArrayLike) -> PreferenceGame:
        """The same game with another reference policy."""
        return replace(self, ref=_as_policy(ref, self.n_contexts, self.n_actions))


def _context_probs(context_probs: ArrayLike | None, n_contexts: int) -> np.ndarray:
    if context_probs is None:
        return np.full(n_contexts, 1.0 / n_contexts)
    rho = np.asarray(context_probs, dtype=np.float64)
    if rho.shape != (n_contexts,) or (rho < 0).any() or not np.isclose(rho.sum(), 1.0):
        raise ConfigError("must be a probability vector over contexts", field="context_probs")
    return rho


def _lengths(lengths: ArrayLike | None, shape: tuple[int, int]) -> np.ndarray | None:
    if lengths is None:
        return None
    arr = np.asarray(lengths, dtype=np.float64)
    return np.broadcast_to(arr, shape).copy() if arr.ndim == 1 else arr


def bt_game(
    rewards: ArrayLike | None = None,
    *,
    ref: ArrayLike | None = None,
    n_contexts: int = 2,
    n_actions: int = 4,
    scale: float = 1.5,
    seed: int = 0,
    context_probs: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    name: str = "bt",
) -> PreferenceGame:
    """A Bradley–Terry game: P(y ≻ y'|x) = σ(r(x, y) − r(x, y')). ``rewards`` (X, K) or (K,); when omitted,
    rewards are N(0, scale²) and π_ref a Dirichlet(2) draw, both from ``seed``."""
    rng = np.random.default_rng(seed)
    if rewards is None:
        r = rng.normal(0.0, scale, size=(n_contexts, n_actions))
        if ref is None:
            ref = rng.dirichlet(np.full(n_actions, 2.0), size=n_contexts)
    else:
        r = np.atleast_2d(np.asarray(rewards, dtype=np.float64))
    X, K = r.shape
    pref = expit(r[:, :, None] - r[:, None, :])
    return PreferenceGame(
        name,
        _as_policy(ref, X, K),
        pref,
        _context_probs(context_probs, X),
        rewards=r,
        lengths=_lengths(lengths, (X, K)),
    )


def preference_game(
    pref: ArrayLike,
    *,
    ref: ArrayLike | None = None,
    context_probs: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    name: str = "general",
) -> PreferenceGame:
    """A game from an arbitrary preference matrix: (K, K) for one context or (X, K, K)."""
    P = np.asarray(pref, dtype=np.float64)
    if P.ndim == 2:
        P = P[None]
    if P.ndim != 3 or P.shape[1] != P.shape[2]:
        raise ConfigError(f"expected a (K, K) or (X, K, K) matrix, got shape {P.shape}", field="pref")
    X, K, _ = P.shape
    return PreferenceGame(
        name, _as_policy(ref, X, K), P, _context_probs(context_probs, X), lengths=_lengths(lengths, (X, K))
    )


def cyclic_game(
    n_actions: int = 3,
    strength: float = 1.0,
    *,
    n_contexts: int = 1,
    ref: ArrayLike | None = None,
    name: str = "cyclic",
) -> PreferenceGame:
    """A cyclic tournament (rock–paper–scissors for K = 3): action i beats i+1, …, i+⌊(K−1)/2⌋ (mod K) with
    probability ½ + strength/2; for even K the opposite action ties. Intransitive: no Bradley–Terry reward
    fits it, and its minimax winner is uniform."""
    if not 0.0 < strength <= 1.0:
        raise ConfigError(f"strength must lie in (0, 1], got {strength}", field="strength")
    if n_actions < 3:
        raise ConfigError("a cyclic game needs at least 3 actions", field="n_actions")
    S = np.zeros((n_actions, n_actions))
    for i in range(n_actions):
        for d in range(1, (n_actions - 1) // 2 + 1):
            S[i, (i + d) % n_actions], S[(i + d) % n_actions, i] = 1.0, -1.0
    P = np.broadcast_to(0.5 + 0.5 * strength * S, (n_contexts, n_actions, n_actions)).copy()
    return preference_game(P, ref=ref, name=name)


def rps_game(
    a: float = 1.0, b: float = 1.0, c: float = 1.0, *, ref: ArrayLike | None = None, name: str = "rps"
) -> PreferenceGame:
    """Weighted rock–paper–scissors: P(0 ≻ 1) = ½ + a/2, P(1 ≻ 2) = ½ + b/2, P(2 ≻ 0) = ½ + c/2
    (0 < a, b, c ≤ 1). Its unique minimax winner is (b, c, a)/(a + b + c)."""
    for key, v in (("a", a), ("b", b), ("c", c)):
        if not 0.0 < v <= 1.0:
            raise ConfigError(f"must lie in (0, 1], got {v}", field=key)
    S = np.array([[0.0, a, -c], [-a, 0.0, b], [c, -b, 0.0]])
    return preference_game(0.5 + 0.5 * S, ref=ref, name=name)


def mixture_game(
    group_rewards: ArrayLike,
    group_weights: ArrayLike,
    *,
    ref: ArrayLike | None = None,
    context_probs: ArrayLike | None = None,
    lengths: ArrayLike | None = None,
    name: str = "groups",
) -> PreferenceGame:
    """A population of user groups: group g (weight w_g) is Bradley–Terry with rewards r_g, shape (G, X, K)
    or (G, K). The population preference is the mixture P = Σ_g w_g σ(r_g(y) − r_g(y'))."""
    R = np.asarray(group_rewards, dtype=np.float64)
    if R.ndim == 2:
        R = R[:, None, :]
    w = np.asarray(group_weights, dtype=np.float64)
    if R.ndim != 3 or w.shape != (R.shape[0],) or (w <= 0).any() or not np.isclose(w.sum(), 1.0):
        raise ConfigError("need (G, X, K) rewards and G positive weights summing to 1", field="group_weights")
    G, X, K = R.shape
    pref = np.einsum("g,gxij->xij", w, expit(R[:, :, :, None] - R[:, :, None, :]))
    return PreferenceGame(
        name,
        _as_policy(ref, X, K),
        pref,
        _context_probs(context_probs, X),
        group_rewards=R,
        group_weights=w,
        lengths=_lengths(lengths, (X, K)),
    )


def two_group_game(minority_weight: float = 0.2, *, scale: float = 3.0, ref: ArrayLike | None = None) -> PreferenceGame:
    """Two groups with conflicting tastes over 4 actions: the majority (weight 1 − w) likes action 0, the
    minority (weight w) likes action 2, both find action 1 acceptable and action 3 bad. A single reward fit
    to the pooled labels follows the majority; the max-min policy moves mass to the compromise."""
    if not 0.0 < minority_weight < 0.5:
        raise ConfigError(f"minority weight must lie in (0, 0.5), got {minority_weight}", field="minority_weight")
    majority = scale * np.array([1.0, 0.6, -0.4, -0.6])
    minority = scale * np.array([-0.4, 0.5, 1.0, -0.6])
    return mixture_game(
        np.stack([majority, minority]), [1 - minority_weight, minority_weight], ref=ref, name="two_group"
    )


def random_game(
    seed: int, *, n_contexts: int = 3, n_actions: int = 4, kind: str = "general", scale: float = 1.5
) -> PreferenceGame:
    """A random game from ``seed``: ``kind`` is "general" (P = σ(A), A skew-symmetric Gaussian: usually
    intransitive), "bt" (Bradley–Terry), or "groups" (three Bradley–Terry groups, Dirichlet weights).
    π_ref is a Dirichlet(2) draw and lengths are integers in [1, 20]."""
    rng = np.random.default_rng(seed)
    ref = rng.dirichlet(np.full(n_actions, 2.0), size=n_contexts)
    lengths = rng.integers(1, 21, size=(n_contexts, n_actions)).astype(np.float64)
    if kind == "bt":
        r = rng.normal(0.0, scale, size=(n_contexts, n_actions))
        return bt_game(r, ref=ref, lengths=lengths, name=f"random_bt_{seed}")
    if kind == "general":
        A = rng.normal(0.0, scale, size=(n_contexts, n_actions, n_actions))
        A = np.triu(A, 1)
        A = A - A.transpose(0, 2, 1)
        return preference_game(expit(A), ref=ref, lengths=lengths, name=f"random_{seed}")
    if kind == "groups":
        R = rng.normal(0.0, scale, size=(3, n_contexts, n_actions))
        return mixture_game(R, rng.dirichlet(np.full(3, 3.0)), ref=ref, lengths=lengths, name=f"random_groups_{seed}")
    raise ConfigError(f"unknown kind '{kind}' (known: general, bt, groups)", field="kind")


GAME_NAMES = ("bt", "cyclic", "rps", "two_group", "random", "random_bt", "random_groups")


def make_game(name: str, *, seed: int = 0, flip_rate: float = 0.0, length_bias: float = 0.0) -> PreferenceGame:
    """A named game for the command line: "bt" (Bradley–Terry, seeded), "cyclic" (rock–paper–scissors with a
    skewed π_ref = (0.6, 0.3, 0.1), so that the regularised Nash equilibrium, the minimax winner and π_ref
    all differ), "rps" (weighted RPS 0.2/0.5/1.0), "two_group", "random" / "random_bt" / "random_groups"
    (seeded), then annotated with label noise and a length bias."""
    if name == "bt":
        game = bt_game(seed=seed)
    elif name == "cyclic":
        game = cyclic_game(3, ref=[0.6, 0.3, 0.1])
    elif name == "rps":
        game = rps_game(0.2, 0.5, 1.0, ref=[0.5, 0.3, 0.2])
    elif name == "two_group":
        game = two_group_game()
    elif name in ("random", "random_bt", "random_groups"):
        game = random_game(seed, kind={"random": "general", "random_bt": "bt", "random_groups": "groups"}[name])
    else:
        import difflib

        close = difflib.get_close_matches(name, GAME_NAMES, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown game '{name}'{hint} (known: {', '.join(GAME_NAMES)})", field="game")
    if flip_rate:
        game = game.with_noise(flip_rate)
    if length_bias:
        game = game.with_length_bias(length_bias)
    return game
