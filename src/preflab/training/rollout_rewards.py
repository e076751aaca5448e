"""A rollout's rewards: the judge's scores or within-prompt win rates, checked before anything trains on them;
running reward statistics across rollouts; the metrics a rollout logs (its rewards, lengths, advantages, KL and
gold reward); and the checks of a rollout's shape against its algorithm and judge (one-line errors before any
work)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError, DataError

GROUP_BASELINES = ("rloo", "grpo")


def judge_rewards(judge: Any, reward: str, prompts: list[Any], texts: list[list[str]], field: str) -> Tensor:
    """(P·G,) rewards of ``texts`` (G completions of each prompt) in prompt-major order: the judge's scores
    (``reward: score``) or each completion's mean win probability against its prompt's others (``win_rate``,
    SPO). A wrong count or a non-finite reward is a one-line :class:`~preflab.errors.DataError` naming the
    judge, the completion and the prompt."""
    flat_prompts = [p for p, ts in zip(prompts, texts, strict=True) for _ in ts]
    flat = [t for ts in texts for t in ts]
    name = getattr(judge, "name", type(judge).__name__)
    if reward == "score":
        scores = list(judge.score_batch(flat_prompts, flat))
        if len(scores) != len(flat):
            raise DataError(f"judge '{name}' returned {len(scores)} rewards for {len(flat)} completions", field=field)
    else:
        scores = []
        for p, ts in zip(prompts, texts, strict=True):
            pairs = [(i, j) for i in range(len(ts)) for j in range(i + 1, len(ts))]
            probs = list(judge.compare_batch([p] * len(pairs), [ts[i] for i, _ in pairs], [ts[j] for _, j in pairs]))
            if len(probs) != len(pairs):
                raise DataError(f"judge '{name}' returned {len(probs)} verdicts for {len(pairs)} pairs", field=field)
            wins = [0.0] * len(ts)
            for (i, j), prob in zip(pairs, probs, strict=True):
                wins[i] += float(prob)
                wins[j] += 1.0 - float(prob)
            scores += [w / (len(ts) - 1) for w in wins]
    per_prompt = len(texts[0]) if texts else 1
    for k, value in enumerate(scores):
        if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise DataError(
                f"judge '{name}' returned a non-finite reward ({value}) for completion "
                f"{k % per_prompt + 1} of prompt {str(flat_prompts[k])[:60]!r}",
                row=k // per_prompt,
                field=field,
            )
    return torch.tensor([float(s) for s in scores], dtype=torch.float64)


class RunningMoments:
    """Running mean and variance of rewards across rollouts (Chan et al.'s parallel update)."""

    def __init__(self) -> None:
        self.count, self.mean, self.var = 0.0, 0.0, 1.0

    def update(self, x: Tensor) -> None:
        n, m, v = float(x.numel()), float(x.mean()), float(x.var(unbiased=False)) if x.numel() > 1 else 0.0
        total = self.count + n
        delta = m - self.mean
        self.var = (self.count * self.var + n * v + delta**2 * self.count * n / total) / total
        self.mean += delta * n / total
        self.count = total


def reward_shift_scale(scores: Tensor, reward_norm: str, moments: RunningMoments) -> tuple[float, float]:
    """(shift, scale) of ``reward_norm``: none (0, 1), the rollout batch's mean and std, or running ones
    (``moments`` updated with ``scores`` first)."""
    if reward_norm == "batch":
        return float(scores.mean()), float(scores.std(unbiased=False)) + 1e-8
    if reward_norm == "running":
        moments.update(scores)
        return moments.mean, math.sqrt(moments.var) + 1e-8
    return 0.0, 1.0


def rollout_metrics(
    rewards: Tensor,
    tensors: dict[str, Tensor],
    truncated: Tensor,
    prompts: list[Any],
    samples: list[list[Any]],
    *,
    kl_coef: float,
    on_policy: bool,
    gold: Any = None,
) -> dict[str, float]:
    """The ``rollout/…`` metrics of one rollout: the judge's rewards, the completions' lengths and truncation, the
    KL coefficient, the advantages' spread, the KL to π_ref and entropy of π_old (not for an ``on_policy``
    rollout, which measures its KL in the update), and ``gold``'s mean reward when a gold judge is given."""
    mask = tensors["mask"].float()
    lengths = torch.tensor([float(len(c.token_ids)) for s in samples for c in s])
    adv = tensors["advantages"][tensors["mask"].bool()]  # the completions' tokens
    out = {
        "rollout/reward": float(rewards.mean()),
        "rollout/reward_std": float(rewards.std(unbiased=False)),
        "rollout/response_length": float(lengths.mean()),
        "rollout/truncated": float(truncated.float().mean()),
        "rollout/kl_coef": float(kl_coef),
        "rollout/advantage_std": float(adv.std(unbiased=False)) if adv.numel() else 0.0,
        # mean per-token advantage: far from 0 when a baseline sits above or below the samples (ReMax's greedy)
        "rollout/advantage_mean": float(adv.mean()) if adv.numel() else 0.0,
    }
    ref = tensors.get("ref_logprobs")
    if ref is not None and not on_policy:  # on-policy rollouts measure the KL in the update ("kl")
        out["rollout/kl"] = float(((tensors["old_logprobs"] - ref) * mask).sum(1).mean())
        out["rollout/entropy"] = float((-tensors["old_logprobs"] * mask).sum() / mask.sum().clamp_min(1))
    if gold is not None:
        flat_prompts = [p for p, s in zip(prompts, samples, strict=True) for _ in s]
        scores = gold.score_batch(flat_prompts, [c.text for s in samples for c in s])
        out["rollout/gold_reward"] = sum(float(g) for g in scores) / len(scores)
    return out


def check_rollout(
    algorithm: str,
    group_size: int,
    prompts_per_rollout: int,
    batch_size: int,
    grad_accum: int,
    judge: Any = None,
    reward: str = "score",
    judge_field: str = "online.judge",
) -> None:
    """The rollout's shape suits the algorithm and the judge can give what ``reward`` asks (one-line errors)."""
    if algorithm in GROUP_BASELINES and group_size < 2:
        raise ConfigError(
            f"algorithm '{algorithm}' takes its baseline from the other samples of the same prompt; "
            f"it needs rollout.group_size ≥ 2 (got {group_size})",
            field="rollout.group_size",
        )
    if judge is not None and reward == "score" and not getattr(judge, "can_score", False):
        name = getattr(judge, "name", type(judge).__name__)
        raise ConfigError(
            f"judge '{name}' only compares pairs and cannot score single completions; use a judge "
            "that scores (gold, reward_model) or set rollout.reward: win_rate",
            field=judge_field,
        )
    if reward == "win_rate" and group_size < 2:
        raise ConfigError(
            "rollout.reward: win_rate compares a prompt's samples with each other; it needs rollout.group_size ≥ 2",
            field="rollout.group_size",
        )
