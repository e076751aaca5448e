"""Iterative schedule: rounds of sample K per prompt from π_t → judge every pair → train against π_t.

Round t (t = 0 … rounds − 1) starts from the policy π_t as the previous round left it:

1. its prompts (all of them, or the next ``prompts_per_round`` of a seeded shuffle) get K samples each from
   π_t, seeded by (run seed, round), so a resumed run draws the same samples;
2. the judge compares every pair of a prompt's samples; the round's pairs and win rates are built by
   :func:`preflab.training.rounds.assemble_round`. With several processes (DDP) each process samples and judges
   its contiguous share of the round's prompts, seeded by (run seed, round, process), and every process builds
   the same round from the gathered shares: no prompt is sampled or judged twice;
3. with the *previous-iterate* reference schedule, the round's reference log-probs log π_t(y|x) are scored
   once, by the policy itself before the round's first update (eval mode, no copy of the weights; with LoRA
   the adapters stay on). π_t is fixed during the round, so this cache is exact, and the reference moves to
   π_{t+1} at the next boundary: the reference of iterative DPO (Xiong et al. 2024), SPPO (Wu et al. 2024),
   INPO and DNO. With the initial reference (iterative DPO against π_0) the run's ordinary reference scores;
4. ``steps_per_round`` optimizer steps draw the round's pairs in seeded shuffled passes.

The loop is the one every schedule feeds: it asks for micro-batches and never sees a round. A checkpoint holds
the round's pairs, win rates and reference table (``state_dict()["tensors"]``), so a run resumed mid-round
trains on exactly the data and the reference an uninterrupted run would have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch, collate_examples
from ..data.tokenize import TokenizedExample, Tokenizer
from ..errors import DataError
from ..models.policy import CachedReference, Reference
from .rounds import RoundData, assemble_round, judge_matrices
from .schedule import SEED_STRIDE, GatherFn, Schedule, ShuffledStream, each_process

SampleFn = Callable[[list[Any], int, int], list[list[Any]]]  # prompts, seed, K -> K completions per prompt
ScoreFn = Callable[[list[TokenizedExample]], Tensor]  # a round's pairs -> (n, 2) log-probs of the policy now


class PreviousIterateReference(CachedReference):
    """π_t, the policy at the start of the current round: the round's reference log-probs, looked up by row.
    :class:`IterativeSchedule` refills ``table`` at every round boundary."""

    mode = "previous_iterate"

    def __init__(self) -> None:
        super().__init__(torch.empty(0, 2))


class AnchoredReference(Reference):
    """Two references at once, for the iterative objectives that take both (INPO's π_ref^{ητ} π_t^{1−ητ}; DNO):
    ``logprobs`` = π_ref (the run's initial reference), ``anchor`` = π_t (the round's cache)."""

    mode = "initial+previous_iterate"

    def __init__(self, initial: Reference, previous: PreviousIterateReference):
        self.initial, self.previous = initial, previous

    def autocast(self) -> Any:
        return self.initial.autocast()

    def logprobs(self, batch: Any) -> Tensor | None:
        return self.initial.logprobs(batch)

    def anchor(self, batch: Any) -> Tensor:
        return self.previous.logprobs(batch)


class IterativeSchedule(Schedule):
    """Rounds of sampled, judged pairs (see the module docstring). ``reference`` and ``score_fn`` are given
    together for the previous-iterate reference schedule, and left out for the initial one."""

    batch_kind = "pair"

    def __init__(
        self,
        prompts: Sequence[Any],
        sample_fn: SampleFn,
        judge: Any,
        tokenizer: Tokenizer,
        batch_size: int,
        *,
        rounds: int,
        samples_per_prompt: int,
        grad_accum: int = 1,
        prompts_per_round: int | None = None,
        steps_per_round: int | None = None,
        pairs: str = "best_worst",
        soft_labels: bool = False,
        reference: PreviousIterateReference | None = None,
        score_fn: ScoreFn | None = None,
        seed: int = 0,
        layout: str = "padded",
        world_size: int = 1,
        rank: int = 0,
        gather: GatherFn | None = None,
    ):
        if not prompts:
            raise DataError("the iterative schedule needs at least one prompt")
        if world_size > 1 and gather is None:
            raise ValueError("several processes share a round's sampling and judging: pass gather")
        if (reference is None) != (score_fn is None):
            raise ValueError("a previous-iterate reference needs score_fn, and score_fn a reference")
        if tokenizer.opt.truncation == "skip":  # a skipped pair would change the round's size: cut it instead
            tokenizer = Tokenizer(tokenizer.tok, replace(tokenizer.opt, truncation="keep_end"))
        self.prompts, self.sample_fn, self.judge, self.tokenizer = list(prompts), sample_fn, judge, tokenizer
        self.batch_size, self.grad_accum, self.seed, self.layout = batch_size, grad_accum, seed, layout
        self.world_size, self.rank, self.gather = world_size, rank, gather
        self.rounds, self.k, self.pairs, self.soft_labels = rounds, samples_per_prompt, pairs, soft_labels
        self.per_round = min(prompts_per_round or len(self.prompts), len(self.prompts))
        self.reference, self.score_fn = reference, score_fn
        self.pad_id = (
            tokenizer.tok.pad_token_id if tokenizer.tok.pad_token_id is not None else tokenizer.tok.eos_token_id
        )
        pairs_per_prompt = 1 if pairs == "best_worst" else self.k * (self.k - 1) // 2
        self.round_size = self.per_round * pairs_per_prompt
        self.steps_per_round = steps_per_round or math.ceil(self.round_size / (self.global_batch * grad_accum))
        self.position = 0  # global micro-batches served
        self.data: RoundData | None = None
        self.round = -1  # the round self.data belongs to
        self._prompt_order = ShuffledStream(len(self.prompts), seed)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def micro_per_round(self) -> int:
        return self.steps_per_round * self.grad_accum

    def round_prompts(self, t: int) -> list[Any]:
        """Round t's prompts: all of them, or the t-th block of ``prompts_per_round`` of the shuffled stream."""
        if self.per_round == len(self.prompts):
            return list(self.prompts)
        return [self.prompts[i] for i in self._prompt_order.rows(t * self.per_round, self.per_round)]

    def sampling_seed(self, t: int) -> int:
        return (self.seed * 1_000_003 + t) * 1_013 + 7

    def _stream(self, t: int) -> ShuffledStream:
        return ShuffledStream(self.round_size, self.seed * 1_009 + t)

    def start_round(self, t: int) -> None:
        """Sample, judge and build round t's pairs from the policy as it is now (π_t), and score π_t on them.
        With several processes each samples and judges its contiguous share of the round's prompts (its own
        seed) and every process assembles the same round from the gathered shares."""
        prompts = self.round_prompts(t)
        seed = self.sampling_seed(t) + SEED_STRIDE * self.rank

        def judged(part: list[Any]) -> list[tuple[list[Any], Tensor]]:
            samples = self.sample_fn(part, seed, self.k)
            if len(samples) != len(part) or any(len(s) != self.k for s in samples):
                raise ValueError(f"sample_fn must return {self.k} completions per prompt")
            mats = judge_matrices(self.judge, part, [[c.text for c in s] for s in samples])
            return list(zip(samples, mats, strict=True))

        drawn = each_process(judged, prompts, self.rank, self.world_size, self.gather)
        data = assemble_round(
            prompts,
            [s for s, _ in drawn],
            [m for _, m in drawn],
            self.tokenizer,
            rule=self.pairs,
            soft_labels=self.soft_labels,
        )
        if len(data.examples) != self.round_size:  # pragma: no cover - assemble_round makes a fixed number
            raise RuntimeError(f"round {t} has {len(data.examples)} pairs, expected {self.round_size}")
        self._set_round(t, data, self.score_fn(data.examples) if self.score_fn is not None else None)

    def _set_round(self, t: int, data: RoundData, table: Tensor | None) -> None:
        self.round, self.data = t, data
        self.data.metrics["iterative/round"] = float(t + 1)
        if self.reference is not None:
            if table is None or table.shape != (len(data.examples), 2) or bool(torch.isnan(table).any()):
                raise DataError(f"round {t + 1}: the reference log-probs do not cover the round's pairs")
            self.reference.table = table.float()

    def next_batch(self) -> ExampleBatch:
        t, pos = divmod(self.position, self.micro_per_round)
        if t != self.round:
            self.start_round(t)
        assert self.data is not None
        rows = self._stream(t).rows(pos * self.global_batch + self.rank * self.batch_size, self.batch_size)
        self.position += 1
        batch = collate_examples([self.data.examples[i] for i in rows], "pair", self.layout, self.pad_id)
        batch.winrate = self.data.winrates[rows]
        return batch

    def metrics(self) -> dict[str, float]:
        return dict(self.data.metrics) if self.data is not None else {}

    @property
    def epoch(self) -> float:
        """Passes over the current round's pairs so far."""
        if self.data is None:
            return 0.0
        return (self.position - self.round * self.micro_per_round) * self.global_batch / self.round_size

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "type": "iterative",
            "position": self.position,
            "global_batch": self.global_batch,
            "num_prompts": len(self.prompts),
            "seed": self.seed,
            "round": self.round,
            "round_size": self.round_size,
            "steps_per_round": self.steps_per_round,
        }
        if self.data is not None:
            state["metrics"] = dict(self.data.metrics)
            state["tensors"] = _pack(self.data, self.reference.table if self.reference is not None else None)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {
            "global_batch": self.global_batch,
            "num_prompts": len(self.prompts),
            "round_size": self.round_size,
            "steps_per_round": self.steps_per_round,
        }
        for key, value in mine.items():
            if state.get(key) != value:
                raise DataError(
                    f"checkpoint was written with {key}={state.get(key)}, this run has {value}; "
                    "resume needs the same prompts, rounds and global batch size"
                )
        self.position = int(state["position"])
        tensors = state.get("tensors")
        if int(state.get("round", -1)) < 0 or not tensors:
            self.round, self.data = -1, None
            return
        data, table = _unpack(tensors)
        data.metrics.update(state.get("metrics", {}))
        self._set_round(int(state["round"]), data, table)


def _pack(data: RoundData, table: Tensor | None) -> dict[str, Tensor]:
    """A round as flat tensors: each row's prompt, chosen and rejected ids back to back (``ids``, ``lengths``
    (n, 3)), its soft label (NaN = hard), its win rates and (previous iterate) its reference log-probs."""
    seqs = [s for ex in data.examples for s in (ex.prompt_ids, *ex.completions)]
    out = {
        "ids": torch.tensor([tok for s in seqs for tok in s], dtype=torch.long),
        "lengths": torch.tensor([len(s) for s in seqs], dtype=torch.long).reshape(-1, 3),
        "prob": torch.tensor([math.nan if ex.prob is None else ex.prob for ex in data.examples], dtype=torch.float64),
        "winrates": data.winrates,
    }
    if table is not None:
        out["reference"] = table
    return out


def _unpack(tensors: dict[str, Tensor]) -> tuple[RoundData, Tensor | None]:
    ids = tensors["ids"].tolist()
    examples, at = [], 0
    for row, (lp, lc, lr) in enumerate(tensors["lengths"].tolist()):
        prompt, chosen, rejected = ids[at : at + lp], ids[at + lp : at + lp + lc], ids[at + lp + lc : at + lp + lc + lr]
        at += lp + lc + lr
        prob = float(tensors["prob"][row])
        examples.append(TokenizedExample(row, prompt, (chosen, rejected), prob=None if math.isnan(prob) else prob))
    return RoundData(examples, tensors["winrates"].float()), tensors.get("reference")
