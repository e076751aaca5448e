"""Objective inputs with exact expectations: every pair / response / ranking of a game, weighted by its
probability under the data distribution, so that an objective's weighted mean *is* its population loss and
autograd gives the exact gradient.

Pairs: contexts x ∼ ρ, responses y, y' ∼ μ(·|x) independently, label y ≻ y' with probability P(y ≻ y').
Every ordered pair (x, y, y'), y ≠ y', appears once as (chosen = y, rejected = y') with weight
ρ(x) μ(y|x) μ(y'|x) P(y ≻ y'|x) (hard labels), or with weight ρ μ μ and soft label P (``soft=True``).
Policy-gradient inputs enumerate every action y with weight ρ(x) π(y|x) (detached): the REINFORCE surrogate's
gradient then equals the exact policy gradient.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from ..errors import TrainingError
from ..objectives.base import DemonstrationInputs, PairInputs, RankingInputs, UnpairedInputs
from ..objectives.game_inputs import GroupRewardInputs, IterativePairInputs, SampleInputs, XPOInputs

__all__ = [
    "PairTable",
    "distinct_pair_mass",
    "exact_demonstrations",
    "exact_group_samples",
    "exact_pairs",
    "exact_rankings",
    "exact_samples",
    "exact_unpaired",
    "exact_xpo_pairs",
    "t",
    "win_rates",
]


def t(a: np.ndarray | Tensor) -> Tensor:
    """A float64 tensor (no copy for tensors)."""
    return a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a, dtype=np.float64))


def win_rates(pref: np.ndarray | Tensor, policy: np.ndarray | Tensor) -> Tensor:
    """(X, K) P(y ≻ π | x) = Σ_y' P(y ≻ y'|x) π(y'|x)."""
    return torch.einsum("xij,xj->xi", t(pref), t(policy))


def distinct_pair_mass(mu: np.ndarray | Tensor) -> Tensor:
    """(X,) the chance 1 − Σ_y μ(y|x)² that two independent draws from μ differ, summed as Σ_{y≠y'} μ(y) μ(y')
    so that it stays accurate (and positive) when μ is nearly pure, where 1 − Σμ² rounds to 0."""
    m = t(mu)
    off_diagonal = ~torch.eye(m.shape[-1], dtype=torch.bool)
    return (m.unsqueeze(-1) * m.unsqueeze(-2) * off_diagonal).sum((-2, -1))


def _pair_index(X: int, K: int, distinct: bool) -> tuple[Tensor, Tensor, Tensor]:
    x, i, j = np.meshgrid(np.arange(X), np.arange(K), np.arange(K), indexing="ij")
    keep = i != j if distinct else np.ones_like(i, dtype=bool)
    return tuple(torch.as_tensor(a[keep]) for a in (x, i, j))  # type: ignore[return-value]


class PairTable:
    """The fixed part of an exact pair batch — indices, weights, soft labels, reference log-probs, lengths —
    computed once; calling it with log π (X, K) gathers the policy's side.

    ``distinct`` (default): pairs of two different responses, y ≠ y' (as in preference datasets and
    :func:`preflab.testbeds.sampling.sample_pairs`), weight ρ μ(y) μ(y') / (1 − Σ_k μ(k)²) (× P(y ≻ y') for
    hard labels). ``distinct=False``: i.i.d. pairs y, y' ∼ μ, identical ones included with weight ρ μ(y)²
    (SPPO's per-response terms are then weighted by μ(y), the paper's E_{y∼π_t}). ``pref`` None: unlabelled
    pairs (SPPO, DNO carry win rates instead)."""

    def __init__(
        self,
        mu: np.ndarray | Tensor,
        rho: np.ndarray | Tensor,
        pref: np.ndarray | Tensor | None,
        *,
        ref: Tensor | None = None,
        soft: bool = False,
        lengths: np.ndarray | Tensor | None = None,
        distinct: bool = True,
    ) -> None:
        mu_t, rho_t = t(mu), t(rho)
        X, K = mu_t.shape
        self.index = x, i, j = _pair_index(X, K, distinct)
        norm = distinct_pair_mass(mu_t) if distinct else torch.ones(X, dtype=mu_t.dtype)
        if distinct and bool(((norm <= 0) & (rho_t > 0)).any()):
            x_pure = int(torch.nonzero((norm <= 0) & (rho_t > 0))[0])
            raise TrainingError(
                f"pairs from a pure strategy in context {x_pure}: no distinct pairs to sample (1 − Σμ² = 0)",
                field="policy",
            )
        self.weight = rho_t[x] * mu_t[x, i] * mu_t[x, j] / norm[x]
        self.prob = None
        if pref is not None:
            P = torch.where(i == j, 0.5, t(pref)[x, i, j])
            if soft:
                self.prob = P
            else:  # an identical pair is "chosen" either way: keep its full weight
                self.weight = self.weight * torch.where(i == j, 1.0, P)
        self.ref = None if ref is None else (ref[x, i], ref[x, j])
        self.lengths = None if lengths is None else (t(lengths)[x, i], t(lengths)[x, j])

    def fields(self, logp: Tensor) -> dict:
        x, i, j = self.index
        return {
            "policy_chosen": logp[x, i],
            "policy_rejected": logp[x, j],
            "ref_chosen": None if self.ref is None else self.ref[0],
            "ref_rejected": None if self.ref is None else self.ref[1],
            "chosen_len": None if self.lengths is None else self.lengths[0],
            "rejected_len": None if self.lengths is None else self.lengths[1],
            "prob": self.prob,
            "weight": self.weight,
        }

    def __call__(self, logp: Tensor) -> PairInputs:
        return PairInputs(**self.fields(logp))

    def iterative(self, logp: Tensor, anchor: Tensor, win: Tensor | None = None) -> IterativePairInputs:
        """With log π_t (``anchor``) and win rates P(y ≻ π_t) (``win``; also SPPO's ``*_winrate``)."""
        x, i, j = self.index
        fields = self.fields(logp)
        fields.update(anchor_chosen=anchor[x, i], anchor_rejected=anchor[x, j])
        if win is not None:
            fields.update(
                win_chosen=win[x, i],
                win_rejected=win[x, j],
                chosen_winrate=win[x, i],
                rejected_winrate=win[x, j],
            )
        return IterativePairInputs(**fields)


def exact_pairs(
    logp: Tensor,
    ref: Tensor | None,
    mu: np.ndarray | Tensor,
    rho: np.ndarray | Tensor,
    pref: np.ndarray | Tensor,
    *,
    soft: bool = False,
    lengths: np.ndarray | Tensor | None = None,
) -> PairInputs:
    """All labelled pairs drawn from μ (see the module docstring) as :class:`PairInputs` (one-off; build a
    :class:`PairTable` to reuse the fixed part across steps)."""
    return PairTable(mu, rho, pref, ref=ref, soft=soft, lengths=lengths)(logp)


def exact_xpo_pairs(
    logp: Tensor,
    ref: Tensor,
    policy: np.ndarray | Tensor,
    rho: np.ndarray | Tensor,
    pref: np.ndarray | Tensor,
) -> XPOInputs:
    """XPO's online pairs: y ∼ π (detached ``policy``), ỹ ∼ π_ref, judged by ``pref`` (both orders
    enumerated, hard labels), plus the exploration samples ỹ ∼ π_ref weighted ρ π_ref."""
    X, K = logp.shape
    x, i, j = (a.reshape(-1) for a in torch.meshgrid(torch.arange(X), torch.arange(K), torch.arange(K), indexing="ij"))
    pi, ref_p, P, rho_t = t(policy), ref.exp(), t(pref), t(rho)
    base = rho_t[x] * pi[x, i] * ref_p[x, j]  # y = i from π, ỹ = j from π_ref
    # The judged pair: (chosen = i, rejected = j) with prob P_ij, (chosen = j, rejected = i) with P_ji.
    xs, ws, ls = torch.cat([x, x]), torch.cat([i, j]), torch.cat([j, i])
    weight = torch.cat([base * P[x, i, j], base * P[x, j, i]])
    xe, ye = (a.reshape(-1) for a in torch.meshgrid(torch.arange(X), torch.arange(K), indexing="ij"))
    return XPOInputs(
        policy_chosen=logp[xs, ws],
        policy_rejected=logp[xs, ls],
        ref_chosen=ref[xs, ws],
        ref_rejected=ref[xs, ls],
        weight=weight,
        policy_explore=logp[xe, ye],
        explore_weight=rho_t[xe] * ref_p[xe, ye],
    )


def exact_samples(
    logp: Tensor,
    reward: Tensor,
    rho: np.ndarray | Tensor,
    *,
    ref: Tensor | None = None,
    anchor: Tensor | None = None,
) -> SampleInputs:
    """Every action y of every context with weight ρ(x) π(y|x) (detached) and its reward (X, K)."""
    X, K = logp.shape
    weight = (t(rho)[:, None] * logp.detach().exp()).reshape(-1)
    group = torch.arange(X).repeat_interleave(K)
    return SampleInputs(
        policy=logp.reshape(-1),
        reward=reward.reshape(-1),
        ref=None if ref is None else ref.reshape(-1),
        anchor=None if anchor is None else anchor.reshape(-1),
        weight=weight,
        group=group,
    )


def exact_group_samples(
    logp: Tensor,
    ref: Tensor,
    group_rewards: np.ndarray | Tensor,
    rho: np.ndarray | Tensor,
    group_weights: Tensor | None,
) -> GroupRewardInputs:
    """Every action with weight ρ π (detached) and the (G, X, K) group rewards as (B, G)."""
    X, K = logp.shape
    R = t(group_rewards)
    return GroupRewardInputs(
        policy=logp.reshape(-1),
        rewards=R.permute(1, 2, 0).reshape(X * K, -1),
        ref=ref.reshape(-1),
        weight=(t(rho)[:, None] * logp.detach().exp()).reshape(-1),
        group=torch.arange(X).repeat_interleave(K),
        group_weights=group_weights,
    )


def exact_unpaired(
    logp: Tensor,
    ref: Tensor,
    mu: np.ndarray | Tensor,
    rho: np.ndarray | Tensor,
    desirable: np.ndarray | Tensor,
) -> UnpairedInputs:
    """Every (x, y) from ρ μ twice: labelled desirable with weight ρ μ d(x, y) and undesirable with weight
    ρ μ (1 − d). KTO's reference point uses the exact E_{x∼ρ, y∼μ}[log π − log π_ref] (one "mismatched"
    entry holding the expectation)."""
    X, K = logp.shape
    base = (t(rho)[:, None] * t(mu)).reshape(-1)
    d = t(desirable).reshape(-1)
    flat, ref_flat = logp.reshape(-1), ref.reshape(-1)
    return UnpairedInputs(
        policy=torch.cat([flat, flat]),
        ref=torch.cat([ref_flat, ref_flat]),
        label=torch.cat([torch.ones(X * K, dtype=torch.bool), torch.zeros(X * K, dtype=torch.bool)]),
        weight=torch.cat([base * d, base * (1 - d)]),
        policy_kl=(base * flat.detach()).sum()[None],
        ref_kl=(base * ref_flat).sum()[None],
    )


def exact_demonstrations(
    logp: Tensor, mu: np.ndarray | Tensor, rho: np.ndarray | Tensor, lengths: np.ndarray | Tensor | None = None
) -> DemonstrationInputs:
    """Every (x, y) demonstrated with weight ρ(x) μ(y|x) (a dataset sampled from the data policy μ, in
    expectation), with the game's response lengths (1 when it has none)."""
    flat = logp.reshape(-1)
    length = torch.ones_like(flat) if lengths is None else t(lengths).reshape(-1)
    return DemonstrationInputs(policy=flat, length=length, weight=(t(rho)[:, None] * t(mu)).reshape(-1))


def exact_rankings(
    logp: Tensor,
    ref: Tensor | None,
    rewards: np.ndarray | Tensor,
    rho: np.ndarray | Tensor,
    *,
    lengths: np.ndarray | Tensor | None = None,
) -> RankingInputs:
    """Every ranking of the K actions, drawn from the Plackett–Luce model with utilities r(x, ·) (the
    listwise extension of Bradley–Terry), weight ρ(x)·PL(σ|x); ``scores`` = K − position (higher = better)."""
    X, K = logp.shape
    r = t(rewards)
    perms = torch.as_tensor(list(itertools.permutations(range(K))))  # (K!, K): actions best → worst
    ranked = r[:, perms]  # (X, K!, K)
    tail_lse = torch.logcumsumexp(ranked.flip(-1), dim=-1).flip(-1)
    log_pl = (ranked - tail_lse).sum(-1)  # (X, K!)
    scores = torch.empty_like(perms, dtype=torch.float64)
    scores.scatter_(1, perms, torch.arange(K, 0, -1, dtype=torch.float64).expand(len(perms), K).contiguous())
    n = len(perms)
    return RankingInputs(
        policy=logp.repeat_interleave(n, dim=0),
        ref=None if ref is None else ref.repeat_interleave(n, dim=0),
        scores=scores.repeat(X, 1),
        length=None if lengths is None else t(lengths).repeat_interleave(n, dim=0),
        weight=(t(rho)[:, None] * log_pl.exp()).reshape(-1),
    )
