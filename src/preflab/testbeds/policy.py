"""Tabular policies (logit tables) and the optimiser loop that fits them to a loss.

A :class:`TablePolicy` is a (X, K) float64 logit table; ``log_probs()`` gives log π(y|x), the "sequence
log-prob" of action y that the registered objectives consume exactly as they consume an LM's sums of token
log-probs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, TrainingError

__all__ = ["TablePolicy", "fit", "single_thread"]

LossFn = Callable[[Tensor], Tensor]  # log π (X, K) → scalar loss


class TablePolicy(torch.nn.Module):
    """π(y|x) = softmax(θ_x)_y with a free logit table θ (X, K), float64."""

    def __init__(self, probs: np.ndarray | Tensor) -> None:
        super().__init__()
        p = torch.as_tensor(np.asarray(probs, dtype=np.float64))
        if p.ndim != 2 or bool((p <= 0).any()):
            raise ConfigError("a table policy needs strictly positive (X, K) probabilities", field="probs")
        self.logits = torch.nn.Parameter(torch.log(p / p.sum(-1, keepdim=True)))

    def log_probs(self) -> Tensor:
        return torch.log_softmax(self.logits, dim=-1)

    def probs(self) -> np.ndarray:
        """The current policy as a detached numpy table."""
        return torch.softmax(self.logits, dim=-1).detach().numpy().copy()

    def set_probs(self, probs: np.ndarray) -> None:
        with torch.no_grad():
            self.logits.copy_(torch.log(torch.as_tensor(probs, dtype=torch.float64)))


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread. Tabular tensors hold a few dozen numbers; on a busy machine some
    kernels (``log_sigmoid``) spend milliseconds waking a thread pool for them, 1000× their compute."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit(
    policy: TablePolicy,
    loss_fn: LossFn,
    *,
    optimizer: str = "lbfgs",
    steps: int = 200,
    lr: float | None = None,
    tol: float = 1e-12,
    lr_decay: float = 1.0,
    context_probs: np.ndarray | None = None,
) -> list[float]:
    """Minimise ``loss_fn(policy.log_probs())`` over the logit table; returns the loss per step.

    optimizer: "lbfgs" (strong-Wolfe line search; for losses whose value is consistent with their gradient,
    e.g. DPO, IPO, INPO, SPPO, DNO — they are convex in logit differences), "sgd" (plain gradient descent;
    for policy-gradient surrogates, whose value is not an objective), "npg" (natural policy gradient: the
    autograd gradient divided by the diagonal Fisher information ρ(x) π(y|x) of the softmax table — for an
    exact policy gradient ρ π (A − Ā) this is the step θ += lr (A − Ā), i.e. the multiplicative-weights /
    mirror-descent update, Kakade 2001; Agarwal et al. 2021; needs ``context_probs``) or "adam".
    ``lr_decay`` multiplies the learning rate after every step (sgd/npg/adam). Stops when the (raw)
    gradient's max-norm falls below ``tol``. A non-finite loss raises :class:`TrainingError`."""
    params = [policy.logits]
    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            params,
            lr=1.0 if lr is None else lr,
            max_iter=20,
            history_size=50,
            tolerance_grad=tol,
            tolerance_change=1e-16,
            line_search_fn="strong_wolfe",
        )
    elif optimizer in ("sgd", "npg"):
        opt = torch.optim.SGD(params, lr=1.0 if lr is None else lr)
        if optimizer == "npg" and context_probs is None:
            raise ConfigError("the natural policy gradient needs the context probabilities", field="context_probs")
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=1e-2 if lr is None else lr)
    else:
        raise ConfigError(f"unknown optimizer '{optimizer}' (known: lbfgs, sgd, npg, adam)", field="optimizer")
    scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=lr_decay)
    losses: list[float] = []
    raw_grads: list[float] = []

    def closure() -> Tensor:
        opt.zero_grad()
        loss = loss_fn(policy.log_probs())
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss {loss.item()} at step {len(losses)}", field="loss")
        loss.backward()
        if optimizer == "npg":
            fisher = torch.as_tensor(context_probs, dtype=torch.float64)[:, None] * policy.log_probs().detach().exp()
            raw_grads.append(float(policy.logits.grad.abs().max()))
            policy.logits.grad /= fisher
        return loss

    with single_thread():
        for _ in range(steps):
            loss = opt.step(closure) if optimizer == "lbfgs" else _step(opt, closure)
            losses.append(float(loss.detach()) if isinstance(loss, Tensor) else float(loss))
            if optimizer != "lbfgs":
                scheduler.step()
            grad = policy.logits.grad
            size = raw_grads[-1] if raw_grads else (None if grad is None else float(grad.abs().max()))
            if size is not None and size < tol:
                break
    return losses


def _step(opt: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> Tensor:
    loss = closure()
    opt.step()
    return loss.detach()
