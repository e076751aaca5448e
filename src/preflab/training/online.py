"""Online schedule: sample from the current policy, ask a judge, train on the judged pair.

Online DPO (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback", Alg. 1): for each
prompt x of the batch draw y¹, y² ~ π_θ(·|x) from the policy as it is *now*, ask the judge for
p = P(y¹ ≻ y² | x), and take a gradient step of the pairwise objective on (x, y_w, y_l) with y_w the
preferred one (with ``soft_labels`` the pair also carries max(p, 1 − p) as its label; a tie, p = ½,
always does). The objective is any registered pair objective (DPO by default); only the data source
differs from the offline schedule, so the training loop is unchanged.

Every batch is on-policy, so the step logs ``kl``: the mean of log π(y|x) − log π_ref(y|x) over its samples, the k1
estimate of KL(π‖π_ref) at the current weights. With a ``gold`` scorer (the task suite's, when the prompts come
from it) the schedule also logs ``gold_reward``, the mean gold score of the samples, and ``proxy_reward``, the
judge's mean score when it scores single responses (a reward model), so the report's over-optimisation curve
(gold and proxy against KL) fills for the run.

The policy is trained on exactly the tokens it sampled (up to and including the EOS that ended them; a
completion cut by ``max_new_tokens`` has no EOS), not on a decode/re-encode round trip; the judge reads
the decoded text. Sampling seeds are a function of (run seed, batch position, process), so a resumed run
samples the same completions as an uninterrupted one.

With ``samples_per_prompt`` K > 2 every pair of a prompt's K samples is judged and the pairs are chosen as in
a round of the iterative schedule (:func:`preflab.training.rounds.build_round`: best against worst by
leave-one-out win rate, or all pairs). XPO (Xie et al. 2024, Alg. 1, and TRL's ``XPOTrainer``) pairs one
sample of the policy with one of π_ref (``explore_fn``); the batch records which slot holds the π_ref sample
ỹ, whose log π(ỹ|x) is XPO's exploration term.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import torch

from ..data.collate import ExampleBatch, collate_examples
from ..data.tokenize import Tokenizer
from ..errors import DataError
from .rounds import build_round
from .schedule import Schedule, ShuffledStream


class Sampled(Protocol):
    """One sampled completion (:class:`preflab.generation.sampler.Completion` has this shape)."""

    text: str
    token_ids: list[int]


SampleFn = Callable[..., list[list[Sampled]]]  # (prompts, seed[, n]) -> n (default two) completions per prompt
ExploreFn = Callable[[list[Any], int], list[Sampled]]  # prompts, seed -> one π_ref completion per prompt


def prompts_of(records: Sequence[Any]) -> list[Any]:
    """The distinct prompts of a dataset (records with a ``prompt``, or bare strings / message lists), in order."""
    seen: set[str] = set()
    out: list[Any] = []
    for row, rec in enumerate(records):
        prompt = getattr(rec, "prompt", rec)
        if not isinstance(prompt, (str, list)) or not prompt:
            raise DataError("an online prompt must be a non-empty string or message list", row=row, field="prompt")
        key = repr(prompt)
        if key not in seen:
            seen.add(key)
            out.append(prompt)
    return out


class OnlineSchedule(Schedule):
    """Pairs sampled from the policy and labelled by ``judge`` (``compare_batch``).

    ``sample_fn(prompts, seed)`` returns two completions (``.text``, ``.token_ids``) per prompt
    (``sample_fn(prompts, seed, K)``: K of them, when ``samples_per_prompt`` is K > 2). ``explore_fn``
    (XPO): one π_ref completion per prompt, paired with one of the policy's.
    """

    batch_kind = "pair"

    def __init__(
        self,
        prompts: Sequence[Any],
        sample_fn: SampleFn,
        judge: Any,
        tokenizer: Tokenizer,
        batch_size: int,
        *,
        seed: int = 0,
        layout: str = "padded",
        world_size: int = 1,
        rank: int = 0,
        soft_labels: bool = False,
        samples_per_prompt: int = 2,
        pairs: str = "best_worst",
        explore_fn: ExploreFn | None = None,
        gold: Callable[[list[Any], list[str]], list[float]] | None = None,
    ):
        if not prompts:
            raise DataError("the online schedule needs at least one prompt")
        if tokenizer.opt.truncation == "skip":  # a skipped sample would change the batch size: cut it instead
            tokenizer = Tokenizer(tokenizer.tok, replace(tokenizer.opt, truncation="keep_end"))
        self.prompts, self.sample_fn, self.judge, self.tokenizer = list(prompts), sample_fn, judge, tokenizer
        self.batch_size, self.seed, self.layout = batch_size, seed, layout
        self.world_size, self.rank, self.soft_labels = world_size, rank, soft_labels
        if samples_per_prompt < 2 or (explore_fn is not None and samples_per_prompt != 2):
            raise ValueError(
                "the online schedule judges at least two samples per prompt (XPO: exactly one of "
                "the policy and one of π_ref)"
            )
        self.k, self.pairs, self.explore_fn = samples_per_prompt, pairs, explore_fn
        self.gold = gold
        self.pad_id = (
            tokenizer.tok.pad_token_id if tokenizer.tok.pad_token_id is not None else tokenizer.tok.eos_token_id
        )
        self.position = 0
        self.stream = ShuffledStream(len(self.prompts), seed)
        self._last: dict[str, float] = {}

    def sampling_seed(self, position: int) -> int:
        return (self.seed * 1_000_003 + position) * 1_009 + self.rank

    def next_batch(self) -> ExampleBatch:
        start = self.position * self.batch_size * self.world_size + self.rank * self.batch_size
        seed = self.sampling_seed(self.position)
        self.position += 1
        rows = self.stream.rows(start, self.batch_size)
        prompts = [self.prompts[i] for i in rows]
        if self.k > 2:
            return self._judged_round(prompts, seed)
        if self.explore_fn is not None:
            mine, theirs = self.sample_fn(prompts, seed, 1), self.explore_fn(prompts, seed + 1)
            if len(mine) != len(prompts) or len(theirs) != len(prompts) or any(len(s) != 1 for s in mine):
                raise ValueError("XPO samples one completion per prompt from the policy and one from π_ref")
            samples = [[s[0], r] for s, r in zip(mine, theirs, strict=True)]
        else:
            samples = self.sample_fn(prompts, seed)
        if len(samples) != len(prompts) or any(len(s) != 2 for s in samples):
            raise ValueError("sample_fn must return two completions per prompt")
        first, second = [s[0] for s in samples], [s[1] for s in samples]
        probs = [float(p) for p in self.judge.compare_batch(prompts, [a.text for a in first], [b.text for b in second])]
        examples = []
        for j, (prompt, a, b, p) in enumerate(zip(prompts, first, second, probs, strict=True)):
            if not (0.0 <= p <= 1.0) or math.isnan(p):
                raise DataError(f"the judge returned P(a ≻ b) = {p}, not a probability", row=start + j)
            chosen, rejected = (a, b) if p >= 0.5 else (b, a)
            # a tie is trained as one (soft label ½: the loss pulls the two log-ratios together), never as a
            # coin-flip hard label
            label = max(p, 1.0 - p) if self.soft_labels or p == 0.5 else None
            prompt_ids = self.tokenizer.prompt_ids(prompt, start + j)
            examples.append(
                self.tokenizer.from_ids(
                    start + j, prompt_ids, [list(chosen.token_ids), list(rejected.token_ids)], prob=label
                )
            )
        lengths = [len(ex.completions[k]) for ex in examples for k in (0, 1)]
        self._last = {
            "online/judge_confidence": sum(max(p, 1 - p) for p in probs) / len(probs),
            "online/ties": sum(p == 0.5 for p in probs) / len(probs),
            "online/identical": sum(a.token_ids == b.token_ids for a, b in zip(first, second, strict=True))
            / len(probs),
            "online/completion_tokens": sum(lengths) / len(lengths),
        }
        # the policy's own samples (XPO's second one is π_ref's): their gold and proxy rewards
        self._log_rewards(prompts, [[a] for a in first] if self.explore_fn is not None else samples)
        batch = collate_examples(examples, "pair", self.layout, self.pad_id)
        batch.meta["on_policy"] = self.explore_fn is None
        if self.explore_fn is not None:  # the π_ref sample is slot 1 unless the judge preferred it
            batch.meta["explore_slot"] = torch.tensor([int(p >= 0.5) for p in probs])
            self._last["online/explore_chosen"] = sum(p < 0.5 for p in probs) / len(probs)
        return batch

    def _log_rewards(self, prompts: list[Any], samples: list[list[Any]]) -> None:
        """Mean gold reward (the task suite's scorer, when the prompts are its tasks) and mean proxy reward (a
        judge that scores, e.g. a reward model) of the policy's samples: the over-optimisation curve's points."""
        flat_prompts = [p for p, group in zip(prompts, samples, strict=True) for _ in group]
        texts = [c.text for group in samples for c in group]
        if self.gold is not None:
            scores = self.gold(flat_prompts, texts)
            self._last["gold_reward"] = sum(scores) / len(scores)
        if getattr(self.judge, "can_score", False):
            scores = self.judge.score_batch(flat_prompts, texts)
            self._last["proxy_reward"] = sum(scores) / len(scores)

    def _judged_round(self, prompts: list[Any], seed: int) -> ExampleBatch:
        """K > 2 samples per prompt: every pair judged, pairs chosen by ``self.pairs`` (a round's rules)."""
        samples = self.sample_fn(prompts, seed, self.k)
        if len(samples) != len(prompts) or any(len(s) != self.k for s in samples):
            raise ValueError(f"sample_fn must return {self.k} completions per prompt")
        data = build_round(prompts, samples, self.judge, self.tokenizer, rule=self.pairs, soft_labels=self.soft_labels)
        self._last = {k.replace("iterative/", "online/"): v for k, v in data.metrics.items()}
        self._log_rewards(prompts, samples)
        batch = collate_examples(data.examples, "pair", self.layout, self.pad_id)
        batch.winrate = data.winrates  # no "on_policy": the judge picked these samples, so no unbiased KL
        return batch

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": "online",
            "position": self.position,
            "global_batch": self.batch_size * self.world_size,
            "num_prompts": len(self.prompts),
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("global_batch") != self.batch_size * self.world_size or state.get("num_prompts") != len(
            self.prompts
        ):
            raise DataError("checkpoint was written with other prompts or another global batch size")
        self.position = int(state["position"])
