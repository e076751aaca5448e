"""The rollout schedule on a bandit game with exact expectations: PPO, RLOO, REINFORCE++, ReMax and GRPO.

Each iteration is one rollout of π_old (the current policy): *every* action y of every context x is a
one-token completion with weight ρ(x)·π_old(y|x), scored by the game's reward r(x, y). The algorithm's estimator
turns the scores into advantages with population group statistics (:mod:`preflab.objectives.advantages`: the
G → ∞ limit of leave-one-out means, group means and stds; ReMax's greedy completion is argmax π_old), and
``inner_steps`` epochs minimise the registered objective — the same clipped surrogate the language-model
trainer minimises — by natural-gradient steps (the autograd gradient divided by ρ π, so that one step of size
η on the unclipped surrogate is θ += η·(A − E_π A), mirror descent). PPO's critic is a per-context value table
fitted by the objective's own value loss. Each step is capped at 1 per logit (a trust region: normalised
advantages near the optimum would otherwise take unbounded natural-gradient steps).

With the KL in the reward (k1) the stationary points of every estimator are π_ref·exp(r/β)/Z; GRPO's paper form
(k3 in the loss, rewards divided by the group std) is stationary where
π(y)(r(y) − E_π r)/std_π(r) = β (π(y) − π_ref(y)), the maximiser of E_π[r]/std − β KL(π_ref‖π) — not the
KL-regularised optimum (the tests assert both).
"""

from __future__ import annotations

import numpy as np
import torch

from ..algorithms import Algorithm
from ..errors import ConfigError, TrainingError
from ..objectives import get_objective
from ..objectives.policy_gradient import RolloutInputs, RolloutScores, estimate_advantages
from .expectations import t
from .games import PreferenceGame
from .policy import TablePolicy, single_thread
from .schedules import GameTrainConfig, Trajectory

__all__ = ["rollouts"]


def rollouts(algo: Algorithm, game: PreferenceGame, cfg: GameTrainConfig) -> Trajectory:
    """``iterations`` rollouts × ``inner_steps`` epochs of natural-gradient steps of size ``lr``/β (default
    ``lr`` 0.25: with the KL in the reward each epoch contracts the distance to the optimum by 1 − ``lr``)."""
    if game.rewards is None:
        raise ConfigError(f"game '{game.name}' has no rewards for a policy-gradient rollout", field="game")
    name = algo.objective
    spec = get_objective(name)
    params = spec.make_params(**{"beta": cfg.beta, "max_length": 1, **cfg.params})
    X, K = game.ref.shape
    rho = t(game.context_probs)
    log_ref = t(np.log(game.ref)).reshape(-1, 1)
    score = t(game.rewards).reshape(-1)
    group = torch.arange(X).repeat_interleave(K)
    mask = torch.ones(X * K, 1, dtype=torch.bool)
    pol = TablePolicy(game.ref if isinstance(cfg.init, str) else np.asarray(cfg.init))
    value = torch.zeros(X, dtype=torch.float64, requires_grad=True)
    lr = (0.25 if cfg.lr is None else cfg.lr) / cfg.beta
    traj = Trajectory(algo.name, [pol.probs()], guarantee=algo.guarantee)
    with single_thread():
        for _ in range(cfg.iterations):
            old = pol.log_probs().detach().reshape(-1, 1)
            weight = rho[group] * old.exp().reshape(-1)
            baseline = None
            if name == "remax":  # the greedy completion of each context, scored with its own KL term
                greedy = old.reshape(X, K).argmax(-1)
                total = score - (params.beta * (old - log_ref).reshape(-1) if params.kl_in_reward else 0.0)
                baseline = total.reshape(X, K)[torch.arange(X), greedy][group]
            old_values = value.detach()[group][:, None]
            rollout = RolloutScores(
                score=score,
                group=group,
                mask=mask,
                old_logprobs=old,
                ref_logprobs=log_ref,
                values=old_values,
                baseline_score=baseline,
                weight=weight,
            )
            adv, returns = estimate_advantages(name, rollout, params)
            for _ in range(cfg.inner_steps):
                pol.zero_grad()
                value.grad = None
                logp = pol.log_probs()
                inputs = RolloutInputs(
                    logprobs=logp.reshape(-1, 1),
                    old_logprobs=old,
                    advantages=adv,
                    mask=mask,
                    ref_logprobs=log_ref,
                    values=value[group][:, None],
                    old_values=old_values,
                    returns=returns,
                    weight=weight,
                )
                loss, _ = spec(inputs, params)
                if not torch.isfinite(loss):
                    raise TrainingError(f"{algo.name}: non-finite loss on the testbed", field="loss")
                loss.backward()
                with torch.no_grad():
                    fisher = rho[:, None] * logp.detach().exp()
                    # a trust region on the logits: no step moves a log-probability ratio by more than 1
                    pol.logits -= (lr * pol.logits.grad / fisher).clamp(-1.0, 1.0)
                    if value.grad is not None:
                        value -= 0.5 * value.grad / (rho * max(params.vf_coef, 1e-12))
                traj.losses.append(float(loss.detach()))
            traj.policies.append(pol.probs())
    return traj
