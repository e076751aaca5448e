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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from ..data.collate import ExampleBatch, collate_examples
from ..data.tokenize import Tokenizer
from ..errors import DataError
from .schedule import Schedule, ShuffledStream


class Sampled(Protocol):
    """One sampled completion (:class:`preflab.generation.sampler.Completion` has this shape)."""

    text: str
    token_ids: list[int]


SampleFn = Callable[[list[Any], int], list[list[Sampled]]]  # prompts, seed -> two completions per prompt


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

    ``sample_fn(prompts, seed)`` returns two completions (``.text``, ``.token_ids``) per prompt.
    """

    kind = "pair"

    def __init__(self, prompts: Sequence[Any], sample_fn: SampleFn, judge: Any, tokenizer: Tokenizer,
                 batch_size: int, *, seed: int = 0, layout: str = "padded", world_size: int = 1, rank: int = 0,
                 soft_labels: bool = False, gold: Callable[[list[Any], list[str]], list[float]] | None = None):
        if not prompts:
            raise DataError("the online schedule needs at least one prompt")
        if tokenizer.opt.truncation == "skip":  # a skipped sample would change the batch size: cut it instead
            tokenizer = Tokenizer(tokenizer.tok, replace(tokenizer.opt, truncation="keep_end"))
        self.prompts, self.sample_fn, self.judge, self.tokenizer = list(prompts), sample_fn, judge, tokenizer
        self.batch_size, self.seed, self.layout = batch_size, seed, layout
        self.world_size, self.rank, self.soft_labels = world_size, rank, soft_labels
        self.gold = gold
        self.pad_id = tokenizer.tok.pad_token_id if tokenizer.tok.pad_token_id is not None else tokenizer.tok.eos_token_id
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
            examples.append(self.tokenizer.from_ids(start + j, prompt_ids, [list(chosen.token_ids),
                                                                            list(rejected.token_ids)], prob=label))
        lengths = [len(ex.completions[k]) for ex in examples for k in (0, 1)]
        self._last = {
            "online/judge_confidence": sum(max(p, 1 - p) for p in probs) / len(probs),
            "online/ties": sum(p == 0.5 for p in probs) / len(probs),
            "online/identical": sum(a.token_ids == b.token_ids for a, b in zip(first, second, strict=True)) / len(probs),
            "online/completion_tokens": sum(lengths) / len(lengths),
        }
        texts = [a.text for a in first] + [b.text for b in second]
        if self.gold is not None:
            scores = self.gold(prompts * 2, texts)
            self._last["gold_reward"] = sum(scores) / len(scores)
        if getattr(self.judge, "can_score", False):
            scores = self.judge.score_batch(prompts * 2, texts)
            self._last["proxy_reward"] = sum(scores) / len(scores)
        batch = collate_examples(examples, "pair", self.layout, self.pad_id)
        batch.meta["on_policy"] = True
        return batch

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    def state_dict(self) -> dict[str, Any]:
        return {"type": "online", "position": self.position, "global_batch": self.batch_size * self.world_size,
                "num_prompts": len(self.prompts), "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("global_batch") != self.batch_size * self.world_size or state.get("num_prompts") != len(self.prompts):
            raise DataError("checkpoint was written with other prompts or another global batch size")
        self.position = int(state["position"])
