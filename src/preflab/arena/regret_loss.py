"""The regret-loss (Park et al., "Do LLM Agents Have Regret?", ICLR 2025) and a single-layer self-attention
learner trained with it on synthetic loss sequences — no optimal-action labels.

Model. A single-layer linear self-attention over the past loss vectors ℓ_1..ℓ_{t−1} ∈ [0, 1]^K with a
constant query: score_s = w·ℓ_s + c (the query–key product), value V ℓ_s, output o_t = Σ_{s<t} score_s V ℓ_s,
policy p_t = softmax(o_t). With w = 0, c = 1 and V = −η I this is exactly FTRL with the entropic regulariser
(Hedge, p_t ∝ exp(−η Σ_{s<t} ℓ_s)); Park et al. show such FTRL-type rules minimise the regret-loss for
single-layer self-attention.

Regret-loss. For a batch of N loss sequences with regrets R_j = Σ_t ⟨p_t, ℓ_t⟩ − min_a Σ_t ℓ_{t,a}:
L = Σ_j f(R_j, k) h(R_j) / Σ_j f(R_j, k), with f(R, k) = exp(k R) (a soft maximum over the batch's sequences:
k → ∞ is the worst case) and h(R) = max(R, 0)² — their loss with h nondecreasing and f → max. The training
sequences are ℓ_t = clip(μ + σ ξ_t) with μ ~ U[0, 1]^K, σ ~ U[0.05, 0.5] and ξ standard normal, drawn
afresh every step.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .agents import Agent, Observation


def _torch():
    import torch

    return torch


def synthetic_losses(n: int, horizon: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, T, K) training sequences: a per-sequence mean μ ~ U[0, 1]^K plus Gaussian noise of a random scale."""
    mu = rng.uniform(0, 1, (n, 1, k))
    sigma = rng.uniform(0.05, 0.5, (n, 1, 1))
    return np.clip(mu + sigma * rng.normal(size=(n, horizon, k)), 0.0, 1.0)


def build_model(k: int, seed: int = 0):
    """The single-layer linear self-attention learner (a ``torch.nn.Module``). Initialisation: attention
    scores 1 (w = 0, c = 1) and values 0 (the uniform policy), plus N(0, 0.01²) noise."""
    torch = _torch()
    nn = torch.nn

    class RegretTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = k
            self.score = nn.Linear(k, 1)  # query·key with a constant query: w·ℓ + c
            self.value = nn.Linear(k, k, bias=False)

        def logits(self, losses):  # (B, T, K) -> (B, T, K): o_t from ℓ_{<t}
            contrib = self.score(losses) * self.value(losses)
            cum = torch.cumsum(contrib, dim=1)
            return torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=1)

        def forward(self, losses):
            return torch.softmax(self.logits(losses), dim=-1)

    g = torch.Generator().manual_seed(seed)
    model = RegretTransformer()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.01 * torch.randn(p.shape, generator=g))
        model.score.bias += 1.0
    return model


def regrets(probs, losses):
    """(B,) regret of each sequence: Σ_t ⟨p_t, ℓ_t⟩ − min_a Σ_t ℓ_{t,a} (torch tensors)."""
    return (probs * losses).sum(dim=(1, 2)) - losses.sum(dim=1).min(dim=-1).values


def regret_loss(R, n_group: int, k: float):
    """Park et al.'s regret-loss on a flat (B,) tensor of regrets, in groups of ``n_group`` sequences."""
    torch = _torch()
    R = R.reshape(-1, n_group)
    weights = torch.softmax(k * R, dim=1)
    return (weights * torch.clamp(R, min=0.0) ** 2).sum(dim=1).mean()


@dataclass
class TrainResult:
    model: object
    losses: list[float]
    k: int
    horizon: int


def train(
    k: int = 3,
    horizon: int = 20,
    steps: int = 600,
    batch: int = 256,
    n_group: int = 8,
    softmax_k: float = 1.0,
    lr: float = 0.02,
    seed: int = 0,
) -> TrainResult:
    """Fit the learner by minimising the regret-loss with Adam on fresh synthetic sequences every step."""
    torch = _torch()
    if batch % n_group:
        raise ConfigError(f"batch ({batch}) must be a multiple of the group size ({n_group})", field="n_group")
    rng = np.random.default_rng(seed)
    model = build_model(k, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        x = torch.as_tensor(synthetic_losses(batch, horizon, k, rng), dtype=torch.float32)
        loss = regret_loss(regrets(model(x), x), n_group, softmax_k)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return TrainResult(model.eval(), history, k, horizon)


def hedge_probs(losses: np.ndarray, eta: float) -> np.ndarray:
    """(n, T, K) FTRL-entropic (Hedge) distributions p_t ∝ exp(−η Σ_{s<t} ℓ_s) on each sequence."""
    cum = np.cumsum(losses, axis=1)
    prev = np.concatenate([np.zeros_like(cum[:, :1]), cum[:, :-1]], axis=1)
    z = -eta * (prev - prev.min(axis=-1, keepdims=True))
    w = np.exp(z)
    return w / w.sum(axis=-1, keepdims=True)


def model_probs(model, losses: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return model(torch.as_tensor(losses, dtype=torch.float32)).double().numpy()


def fit_ftrl(model, losses: np.ndarray) -> float:
    """The learning rate η of the FTRL-entropic rule closest (mean total variation) to the model on ``losses``."""
    from scipy.optimize import minimize_scalar

    p = model_probs(model, losses)
    res = minimize_scalar(
        lambda eta: 0.5 * np.abs(hedge_probs(losses, eta) - p).sum(-1).mean(), bounds=(0.0, 10.0), method="bounded"
    )
    return float(res.x)


def compare_with_ftrl(model, train_losses: np.ndarray, held_out: np.ndarray) -> dict:
    """η fitted on ``train_losses``; on ``held_out``: mean TV to that FTRL, to uniform, and the regrets."""
    eta = fit_ftrl(model, train_losses)
    p = model_probs(model, held_out)
    f = hedge_probs(held_out, eta)
    K = held_out.shape[-1]

    def regret(q):
        return ((q * held_out).sum(axis=(1, 2)) - held_out.sum(axis=1).min(axis=-1)).mean()

    return {
        "eta": eta,
        "tv_to_ftrl": float(0.5 * np.abs(p - f).sum(-1).mean()),
        "tv_to_uniform": float(0.5 * np.abs(p - 1.0 / K).sum(-1).mean()),
        "regret_model": float(regret(p)),
        "regret_ftrl": float(regret(f)),
        "regret_uniform": float(regret(np.full_like(p, 1.0 / K))),
    }


def save(model, path: str | Path) -> Path:
    torch = _torch()
    from ..files import atomic_open

    with atomic_open(path, "wb") as fh:
        torch.save({"k": model.k, "state": model.state_dict()}, fh)
    return Path(path)


def load(path: str | Path):
    torch = _torch()
    try:
        blob = torch.load(path, weights_only=True)
        model = build_model(int(blob["k"]))
        model.load_state_dict(blob["state"])
    except (OSError, KeyError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ConfigError(f"not a regret-loss transformer ({exc})", file=str(path)) from None
    return model.eval()


class RegretTransformerAgent(Agent):
    """The trained learner as an arena agent (full information; K must match the model's)."""

    name = "regret_transformer"
    needs = "full"

    def __init__(self, model) -> None:
        self.model = model

    def reset(self, n_actions, horizon, rng):
        if n_actions != self.model.k:
            raise ConfigError(
                f"the regret transformer was trained for {self.model.k} actions, the environment has {n_actions}",
                field="n_actions",
            )
        super().reset(n_actions, horizon, rng)
        self.history: list[np.ndarray] = []

    def act(self):
        torch = _torch()
        past = np.array(self.history + [np.zeros(self.K)])[None]  # the last row is the current round's slot
        with torch.no_grad():
            return self.model(torch.as_tensor(past, dtype=torch.float32))[0, -1].double().numpy()

    def update(self, obs: Observation) -> None:
        self.history.append(np.asarray(obs.losses, dtype=np.float64))
        self.t += 1
