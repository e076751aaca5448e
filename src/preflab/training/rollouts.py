"""Rollout schedule: policy-gradient RLHF (PPO, RLOO, REINFORCE++, ReMax, GRPO) through the one training loop.

Rollout t (t = 0, 1, …):

1. the next ``prompts_per_rollout`` prompts of a seeded shuffle get G = ``group_size`` completions each from the
   policy as it is now (π_old), seeded by (run seed, t): a resumed run draws the same samples. The policy trains
   on exactly the sampled token ids, up to and including the EOS that ended them; a completion cut by
   ``max_new_tokens`` has none (``rollout.truncated`` keeps, masks or penalises it);
2. the judge scores every completion (``reward: score``: a gold scorer, a reward model, a weighted sum) or
   compares every pair of a prompt's completions (``reward: win_rate``: the fraction of the others it beats, as
   SPO). A non-finite reward or a wrong count is a one-line :class:`~preflab.errors.DataError` raised before any
   weights change; ReMax also decodes and scores one greedy completion per prompt;
3. one no-grad scoring pass (eval mode) gives per-token log π_old, log π_ref and (PPO) the critic's values (log
   π_old comes with the samples instead where the rollout engine decoded with the policy's own weights: the
   same quantity from the decoding pass, so the policy is not run twice; a critic still needs its pass); the
   algorithm's estimator (:func:`preflab.objectives.policy_gradient.estimate_advantages`) turns them and the
   (optionally normalised) scores into per-token advantages, with the KL coefficient of the run's KL controller;
4. ``epochs`` seeded shuffled passes over the rollout's completions feed the loop, ``train.batch_size``
   completions per micro-batch, so one optimizer step is a minibatch of ``batch_size × grad_accum``.

With several processes (DDP) each samples, judges and scores its contiguous share of the rollout's prompts (its own
sampling seed) and gathers the others', so every process holds the same rollout and advantages; each global
minibatch (``batch_size × grad_accum × processes`` completions) is split between them.

The loop never sees a rollout boundary. A checkpoint holds the rollout's ids and per-token tensors, the KL
controller, the running reward statistics and the critic (``state_dict()["tensors"]``), so a run resumed
mid-rollout trains on exactly what an uninterrupted run would have.

The batches, the scoring pass and the loss live in :mod:`preflab.training.rollout_batches`, the rewards, their
normalisation, the rollout's metrics and the shape checks in :mod:`preflab.training.rollout_rewards`, the
schedule's assembly from a run config in :mod:`preflab.training.rollout_setup`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch
from ..data.tokenize import TokenizedExample, Tokenizer
from ..errors import ConfigError, DataError
from ..objectives.advantages import AdaptiveKLController, FixedKLController, kl_estimate
from ..objectives.policy_gradient import RolloutScores, estimate_advantages
from .rollout_batches import (
    RefFn,
    RolloutData,
    ScoreFn,
    pack_rollout,
    pass_logprobs,
    pass_logprobs_usable,
    rollout_batch,
    score_rows,
    unpack_rollout,
)
from .rollout_rewards import RunningMoments, check_rollout, judge_rewards, reward_shift_scale, rollout_metrics
from .schedule import SEED_STRIDE, GatherFn, Schedule, ShuffledStream, each_process

SampleFn = Callable[..., list[list[Any]]]  # (prompts, seed, n, greedy=False) -> n completions per prompt


class RolloutSchedule(Schedule):
    """Rollouts of G completions per prompt and minibatch passes over them (see the module docstring)."""

    batch_kind = "rollout"

    def __init__(
        self,
        prompts: Sequence[Any],
        sample_fn: SampleFn,
        judge: Any,
        tokenizer: Tokenizer,
        batch_size: int,
        *,
        algorithm: str,
        params: Any,
        score_fn: ScoreFn,
        ref_fn: RefFn,
        group_size: int = 4,
        prompts_per_rollout: int = 4,
        epochs: int = 1,
        grad_accum: int = 1,
        reward: str = "score",
        reward_norm: str = "none",
        truncated: str = "keep",
        truncated_penalty: float = 1.0,
        gold: Any = None,
        value_head: Any = None,
        seed: int = 0,
        layout: str = "padded",
        world_size: int = 1,
        rank: int = 0,
        gather: GatherFn | None = None,
        judge_field: str = "online.judge",
    ):
        if not prompts:
            raise DataError("the rollout schedule needs at least one prompt")
        if world_size > 1 and gather is None:
            raise ValueError("several processes share a rollout's sampling, judging and scoring: pass gather")
        check_rollout(algorithm, group_size, prompts_per_rollout, batch_size, grad_accum, judge, reward, judge_field)
        if tokenizer.opt.truncation == "skip":  # a skipped completion would change the rollout's size
            tokenizer = Tokenizer(tokenizer.tok, replace(tokenizer.opt, truncation="keep_end"))
        self.prompts, self.sample_fn, self.judge, self.tokenizer = list(prompts), sample_fn, judge, tokenizer
        self.algorithm, self.params, self.score_fn, self.ref_fn = algorithm, params, score_fn, ref_fn
        self.g, self.per_rollout = group_size, min(prompts_per_rollout, len(self.prompts))
        self.epochs, self.batch_size, self.grad_accum = epochs, batch_size, grad_accum
        self.reward, self.reward_norm, self.truncated, self.truncated_penalty = (
            reward,
            reward_norm,
            truncated,
            truncated_penalty,
        )
        self.gold, self.value_head, self.seed, self.layout = gold, value_head, seed, layout
        self.judge_field = judge_field
        self.world_size, self.rank, self.gather = world_size, rank, gather
        self.pad_id = (
            tokenizer.tok.pad_token_id if tokenizer.tok.pad_token_id is not None else tokenizer.tok.eos_token_id
        )
        self.rollout_size = self.per_rollout * group_size
        minibatch = batch_size * grad_accum * world_size
        if self.rollout_size % minibatch:
            processes = f" × {world_size} processes" if world_size > 1 else ""
            raise ConfigError(
                f"a rollout of {self.per_rollout} prompts × {group_size} completions does not split into "
                f"minibatches of train.batch_size × train.grad_accum{processes} = {minibatch}",
                field="rollout.prompts_per_rollout",
            )
        self.steps_per_rollout = epochs * self.rollout_size // minibatch
        self.kl_ctl: Any = (
            AdaptiveKLController(params.beta, params.kl_target, params.kl_horizon)
            if params.kl_target is not None
            else FixedKLController(params.beta)
        )
        self.moments = RunningMoments()
        self.position = 0  # micro-batches served
        self.data: RolloutData | None = None
        self.rollout = -1
        self._prompt_order = ShuffledStream(len(self.prompts), seed)
        self._fresh_until = -1  # micro-batches of the step that drew the rollout report its time

    @property
    def micro_per_rollout(self) -> int:
        return self.steps_per_rollout * self.grad_accum

    def sampling_seed(self, t: int) -> int:
        return (self.seed * 1_000_003 + t) * 1_019 + 11

    def rollout_prompts(self, t: int) -> list[Any]:
        return [self.prompts[i] for i in self._prompt_order.rows(t * self.per_rollout, self.per_rollout)]

    # ------------------------------------------------------------------ one rollout
    def _rewards(self, prompts: list[Any], texts: list[list[str]]) -> Tensor:
        """(P·G,) rewards in prompt-major order, checked before anything trains on them (:func:`judge_rewards`)."""
        return judge_rewards(self.judge, self.reward, prompts, texts, self.judge_field)

    @property
    def on_policy(self) -> bool:
        """One minibatch per rollout, no critic and no KL in the reward: π_old is the policy of the only update,
        so its log-probs are that forward's, detached (ratio 1, as TRL does with one iteration), and the
        rollout skips its own scoring pass of the policy."""
        kl_reward = self.params.kl_in_reward and (self.params.beta > 0 or self.params.kl_target is not None)
        return self.steps_per_rollout == 1 and self.value_head is None and not kl_reward

    def _score(self, examples: list[TokenizedExample], policy: bool = True) -> dict[str, Tensor]:
        """Per-token log π_old, log π_ref, mask and critic values (N, T) of ``examples``, no grad; without
        ``policy`` π_old is not scored (NaN). With several processes each scores its share and all get all."""
        width = max(len(ex.completions[0]) for ex in examples)
        score = self.score_fn if policy else None
        rows = each_process(
            lambda part: score_rows(part, width, score, self.ref_fn, self.batch_size, self.layout, self.pad_id),
            examples,
            self.rank,
            self.world_size,
            self.gather,
        )
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    def start_rollout(self, t: int) -> None:
        """Sample, judge and score rollout t with the policy as it is now, and estimate its advantages."""
        t0 = time.perf_counter()
        prompts = self.rollout_prompts(t)
        seed = self.sampling_seed(t) + SEED_STRIDE * self.rank

        def judged(part: list[Any]) -> list[tuple[list[Any], list[float]]]:  # this process's prompts
            samples = self.sample_fn(part, seed, self.g)
            if len(samples) != len(part) or any(len(s) != self.g for s in samples):
                raise ValueError(f"sample_fn must return {self.g} completions per prompt")
            got = self._rewards(part, [[c.text for c in s] for s in samples]).view(len(part), self.g)
            return list(zip(samples, got.tolist(), strict=True))

        drawn = each_process(judged, prompts, self.rank, self.world_size, self.gather)
        samples = [s for s, _ in drawn]
        rewards = torch.tensor([r for _, rs in drawn for r in rs], dtype=torch.float64)
        examples, cut = [], []
        for i, (prompt, comps) in enumerate(zip(prompts, samples, strict=True)):
            prompt_ids = self.tokenizer.prompt_ids(prompt, i)
            for comp in comps:
                ids = list(comp.token_ids) or [self.tokenizer.tok.eos_token_id]
                ex = self.tokenizer.from_ids(len(examples), prompt_ids, [ids])
                assert ex is not None  # keep_end never skips
                examples.append(ex)
                cut.append(comp.finish_reason != "stop")
        truncated = torch.tensor(cut)
        self.params.beta = self.kl_ctl.value  # β of this rollout, in the reward and in the loss
        from_pass = not self.on_policy and self.value_head is None and pass_logprobs_usable(samples, examples)
        tensors = self._score(examples, policy=not self.on_policy and not from_pass)
        if from_pass:  # π_old is the sampling policy itself: its per-token log-probs came with the samples
            tensors["old_logprobs"] = pass_logprobs(samples, tensors["mask"].shape[1])
        scores = rewards.clone()
        if self.truncated == "penalize":
            scores = scores - self.truncated_penalty * truncated.to(scores.dtype)
        shift, scale = reward_shift_scale(scores, self.reward_norm, self.moments)
        scores = (scores - shift) / scale
        group = torch.arange(len(prompts)).repeat_interleave(self.g)
        baseline, greedy_reward = (
            self._greedy_baseline(prompts, shift, scale) if self.algorithm == "remax" else (None, None)
        )
        mask = tensors["mask"]
        if self.truncated == "mask":
            mask = mask & ~truncated[:, None]
            tensors["mask"] = mask
        scores_in = RolloutScores(
            score=scores.float(),
            group=group,
            mask=mask,
            old_logprobs=tensors["old_logprobs"],
            ref_logprobs=tensors.get("ref_logprobs"),
            values=tensors.get("old_values"),
            baseline_score=baseline,
        )
        adv, returns = estimate_advantages(self.algorithm, scores_in, self.params, beta=self.kl_ctl.value)
        tensors["advantages"] = adv.float()
        if returns is not None:
            tensors["returns"] = returns.float()
        metrics = rollout_metrics(
            rewards,
            tensors,
            truncated,
            prompts,
            samples,
            kl_coef=self.kl_ctl.value,
            on_policy=self.on_policy,
            gold=self.gold,
        )
        if greedy_reward is not None:  # ReMax: the judge's mean reward of the greedy completions
            metrics["rollout/greedy_reward"] = greedy_reward
        metrics["time/rollout"] = time.perf_counter() - t0
        self.kl_ctl.update(metrics.get("rollout/kl", 0.0), self.rollout_size)  # the next rollout's β
        self._set_rollout(t, RolloutData(examples, tensors, metrics))
        self._fresh_until = self.position + self.grad_accum

    def _greedy_baseline(self, prompts: list[Any], shift: float, scale: float) -> tuple[Tensor, float]:
        """ReMax: the total reward of each prompt's greedy completion (normalised like the sampled ones, with its
        own KL term when the KL is in the reward), repeated over the prompt's G samples; and the judge's mean
        reward of the greedy completions (a metric)."""
        if self.reward != "score":
            raise ConfigError("ReMax needs a judge that scores (rollout.reward: score)", field="rollout.reward")

        def best(part: list[Any]) -> list[tuple[Any, float]]:
            greedy = [g[0] for g in self.sample_fn(part, self.sampling_seed(t=-1), 1, greedy=True)]
            return list(zip(greedy, self._rewards(part, [[g.text] for g in greedy]).tolist(), strict=True))

        drawn = each_process(best, prompts, self.rank, self.world_size, self.gather)
        greedy = [g for g, _ in drawn]
        scores = (torch.tensor([r for _, r in drawn], dtype=torch.float64) - shift) / scale
        eos = self.tokenizer.tok.eos_token_id
        examples = [
            self.tokenizer.from_ids(i, self.tokenizer.prompt_ids(p, i), [list(g.token_ids) or [eos]])
            for i, (p, g) in enumerate(zip(prompts, greedy, strict=True))
        ]
        tens = self._score([ex for ex in examples if ex is not None])
        total = scores.float()
        ref = tens.get("ref_logprobs")
        if self.params.kl_in_reward and ref is not None and self.params.beta:
            kl = kl_estimate(tens["old_logprobs"], ref, self.params.kl_estimator) * tens["mask"]
            total = total - self.params.beta * kl.sum(1)
        return total.repeat_interleave(self.g), sum(r for _, r in drawn) / len(drawn)

    def _set_rollout(self, t: int, data: RolloutData) -> None:
        self.rollout, self.data = t, data
        data.metrics["rollout/index"] = float(t + 1)

    # ------------------------------------------------------------------ the loop's side
    def next_batch(self) -> ExampleBatch:
        t, pos = divmod(self.position, self.micro_per_rollout)
        if t != self.rollout:
            self.start_rollout(t)
        assert self.data is not None
        stream = ShuffledStream(self.rollout_size, self.seed * 1_009 + t + 1)
        rows = stream.rows(pos * self.batch_size * self.world_size + self.rank * self.batch_size, self.batch_size)
        self.position += 1
        batch, order = rollout_batch([self.data.examples[i] for i in rows], self.layout, self.pad_id)
        rows = [rows[i] for i in order]
        batch.meta["rollout"] = {k: v[rows] for k, v in self.data.tensors.items()}
        return batch

    def metrics(self) -> dict[str, float]:
        if self.data is None:
            return {}
        out = dict(self.data.metrics)
        if self.position > self._fresh_until:
            out["time/rollout"] = 0.0
        return out

    @property
    def epoch(self) -> float:
        """Passes over the current rollout so far."""
        if self.data is None:
            return 0.0
        served = (self.position - self.rollout * self.micro_per_rollout) * self.batch_size * self.world_size
        return served / self.rollout_size

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "type": "rollout",
            "position": self.position,
            "rollout": self.rollout,
            "rollout_size": self.rollout_size,
            "steps_per_rollout": self.steps_per_rollout,
            "num_prompts": len(self.prompts),
            "seed": self.seed,
            "kl_coef": self.kl_ctl.value,
            "beta": self.params.beta,
            "fresh_until": self._fresh_until,
            "moments": [self.moments.count, self.moments.mean, self.moments.var],
        }
        tensors: dict[str, Tensor] = {}
        if self.data is not None:
            state["metrics"] = dict(self.data.metrics)
            tensors.update(pack_rollout(self.data))
        if self.value_head is not None:
            tensors.update({f"value_head.{k}": v.detach().cpu() for k, v in self.value_head.state_dict().items()})
        if tensors:
            state["tensors"] = tensors
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {
            "rollout_size": self.rollout_size,
            "steps_per_rollout": self.steps_per_rollout,
            "num_prompts": len(self.prompts),
        }
        for key, value in mine.items():
            if state.get(key) != value:
                raise DataError(
                    f"checkpoint was written with {key}={state.get(key)}, this run has {value}; "
                    "resume needs the same prompts, rollout shape and batch size"
                )
        self.position, self._fresh_until = int(state["position"]), int(state.get("fresh_until", -1))
        self.kl_ctl.load_state_dict({"value": float(state["kl_coef"])})
        self.params.beta = float(state["beta"])
        self.moments.count, self.moments.mean, self.moments.var = (float(x) for x in state["moments"])
        tensors = state.get("tensors") or {}
        if self.value_head is not None:
            head = {k[len("value_head.") :]: v for k, v in tensors.items() if k.startswith("value_head.")}
            if head:
                with torch.no_grad():
                    for k, v in self.value_head.state_dict().items():
                        v.copy_(head[k])
        if int(state.get("rollout", -1)) < 0 or "ids" not in tensors:
            self.rollout, self.data = -1, None
            return
        data = unpack_rollout(tensors)
        data.metrics.update(state.get("metrics", {}))
        self.rollout, self.data = int(state["rollout"]), data
