"""Policy-gradient self-play schedules: Nash-MD, Nash-MP and SPO on language models.

Every micro-batch draws ``batch_size`` prompts (round t's prompts, as the iterative schedule takes them) and
K samples y_1 … y_K ∼ π(·|x) per prompt from the policy *as it is now*; a pairwise judge rewards each sample,
and the objective (:mod:`preflab.objectives.nash`, :mod:`preflab.objectives.self_play`) takes a REINFORCE step
with a per-prompt baseline. The schedules differ in what a sample plays against:

* **Nash-MD** (Munos et al. 2023, §7, Nash-MD-PG): one opponent y' per prompt from the geometric mixture
  π^{1−m} π_ref^{m} of the current policy and the reference (m = ``mixture_coef`` = βη, sampled per token by
  :mod:`preflab.generation.mixture`); reward P(y_k ≻ y'); the objective adds −τ(log π − log π_ref).
* **Nash-MP** (mirror prox; "Nash Learning from Human Feedback via Mirror Prox", approximate Nash-MP with
  policy gradients): round k holds two snapshots of the trainable weights. The first half of the round
  (extrapolation) plays against samples of π^k, the round's starting weights, and the second half (update)
  restarts from π^k and plays against π^{k+½}, the weights the extrapolation reached: both half-steps are
  proximal steps from π^k (``anchor`` = log π^k(y), scored with the π^k snapshot swapped in). The restart
  resets the trainable weights only; the optimizer's moments carry over.
* **SPO** (Swamy et al. 2024, Alg. 1): no opponent; every pair of the K samples is judged and each sample's
  reward is the fraction of the other K − 1 it beats, P̂(y_k ≻ π) (leave-one-out, as in
  :func:`preflab.training.rounds.win_rates`).

Sampling seeds are a function of (run seed, micro-batch, process), the snapshots are part of the
checkpoint (``state_dict()["tensors"]``), so a run resumed mid-round equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch, collate_sequences
from ..data.tokenize import Tokenizer
from ..errors import DataError
from .rounds import judge_matrices, win_rates
from .schedule import Schedule, ShuffledStream

GAMES = ("nash_md", "nash_mp", "spo")
SampleFn = Callable[[list[Any], int, int], list[list[Any]]]  # prompts, seed, K -> K completions per prompt
OpponentFn = Callable[[list[Any], int], list[Any]]  # prompts, seed -> one opponent completion per prompt


class Snapshots:
    """Named copies of a model's trainable weights (Nash-MP's π^k and π^{k+½}): capture, restore, swap in."""

    def __init__(self, model: torch.nn.Module):
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.saved: dict[str, dict[str, Tensor]] = {}

    @torch.no_grad()
    def capture(self, name: str) -> None:
        self.saved[name] = {n: p.detach().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def restore(self, name: str) -> None:
        for n, p in self.params.items():
            p.copy_(self.saved[name][n])

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[None]:
        """The model holds snapshot ``name`` inside the block and its own weights again after it."""
        current = {n: p.detach().clone() for n, p in self.params.items()}
        self.restore(name)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(current[n])

    def tensors(self) -> dict[str, Tensor]:
        return {f"snapshot/{name}/{n}": t.cpu() for name, snap in self.saved.items() for n, t in snap.items()}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.saved = {}
        for key, value in tensors.items():
            if key.startswith("snapshot/"):
                _, name, param = key.split("/", 2)
                self.saved.setdefault(name, {})[param] = value.to(self.params[param].device)


class SelfPlaySchedule(Schedule):
    """Samples of the current policy rewarded by a pairwise judge (see the module docstring)."""

    batch_kind = "samples"

    def __init__(
        self,
        prompts: Sequence[Any],
        sample_fn: SampleFn,
        judge: Any,
        tokenizer: Tokenizer,
        batch_size: int,
        *,
        game: str,
        rounds: int,
        samples_per_prompt: int,
        grad_accum: int = 1,
        prompts_per_round: int | None = None,
        steps_per_round: int | None = None,
        opponent_fn: OpponentFn | None = None,
        snapshots: Snapshots | None = None,
        score_fn: Callable[[Any], Tensor] | None = None,
        seed: int = 0,
        layout: str = "padded",
        world_size: int = 1,
        rank: int = 0,
    ):
        if game not in GAMES:
            raise ValueError(f"unknown self-play game '{game}' (known: {', '.join(GAMES)})")
        if not prompts:
            raise DataError("the self-play schedule needs at least one prompt")
        if (game == "nash_md") != (opponent_fn is not None):
            raise ValueError("Nash-MD, and only Nash-MD, samples its opponents from the mixture (opponent_fn)")
        if (game == "nash_mp") != (snapshots is not None and score_fn is not None):
            raise ValueError("Nash-MP, and only Nash-MP, keeps snapshots and scores its anchor (score_fn)")
        if tokenizer.opt.truncation == "skip":  # a skipped sample would change the batch: cut it instead
            tokenizer = Tokenizer(tokenizer.tok, replace(tokenizer.opt, truncation="keep_end"))
        self.prompts, self.sample_fn, self.judge, self.tokenizer = list(prompts), sample_fn, judge, tokenizer
        self.game, self.opponent_fn, self.snapshots, self.score_fn = game, opponent_fn, snapshots, score_fn
        self.batch_size, self.grad_accum, self.seed, self.layout = batch_size, grad_accum, seed, layout
        self.world_size, self.rank, self.rounds, self.k = world_size, rank, rounds, samples_per_prompt
        self.per_round = min(prompts_per_round or len(self.prompts), len(self.prompts))
        self.steps_per_round = steps_per_round or math.ceil(self.per_round / (self.global_batch * grad_accum))
        if game == "nash_mp" and self.steps_per_round < 2:
            from ..errors import ConfigError

            raise ConfigError(
                "Nash-MP splits each round into an extrapolation and an update half: it needs "
                f"at least 2 steps per round, got {self.steps_per_round}",
                field="iterative.steps_per_round",
            )
        self.pad_id = (
            tokenizer.tok.pad_token_id if tokenizer.tok.pad_token_id is not None else tokenizer.tok.eos_token_id
        )
        self.position = 0  # global micro-batches served
        self.round = -1  # the round whose π^k snapshot is held (Nash-MP)
        self.half = -1  # the round whose update half has started (Nash-MP)
        self._prompt_order = ShuffledStream(len(self.prompts), seed)
        self._last: dict[str, float] = {}

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def total_steps(self) -> int:
        return self.rounds * self.steps_per_round

    @property
    def micro_per_round(self) -> int:
        return self.steps_per_round * self.grad_accum

    @property
    def extrapolation_micro(self) -> int:
        """Micro-batches of a Nash-MP round's extrapolation half (the first ⌈steps/2⌉ optimizer steps)."""
        return math.ceil(self.steps_per_round / 2) * self.grad_accum

    def round_prompts(self, t: int) -> list[Any]:
        if self.per_round == len(self.prompts):
            return list(self.prompts)
        return [self.prompts[i] for i in self._prompt_order.rows(t * self.per_round, self.per_round)]

    def sampling_seed(self, position: int) -> int:
        return ((self.seed * 1_000_003 + position) * 1_013 + 11) * 64 + self.rank

    # ------------------------------------------------------------------ Nash-MP's two snapshots
    def _mirror_prox(self, t: int, pos: int) -> str:
        """Move the snapshots to round t, micro-batch ``pos``; returns the opponent's snapshot name."""
        assert self.snapshots is not None
        if t != self.round:  # the weights now are π^k of round t (k = t)
            self.snapshots.capture("k")
            self.round = t
        if pos < self.extrapolation_micro:
            return "k"
        if self.half != t:  # extrapolation done: keep π^{k+½}, restart the update from π^k
            self.snapshots.capture("half")
            self.snapshots.restore("k")
            self.half = t
        return "half"

    def next_batch(self) -> ExampleBatch:
        t, pos = divmod(self.position, self.micro_per_round)
        opponent = self._mirror_prox(t, pos) if self.game == "nash_mp" else None
        start = pos * self.global_batch + self.rank * self.batch_size
        rows = ShuffledStream(self.per_round, self.seed * 1_009 + t).rows(start, self.batch_size)
        round_prompts = self.round_prompts(t)
        prompts = [round_prompts[i] for i in rows]
        seed = self.sampling_seed(self.position)
        self.position += 1
        samples = self.sample_fn(prompts, seed, self.k)
        if len(samples) != len(prompts) or any(len(s) != self.k for s in samples):
            raise ValueError(f"sample_fn must return {self.k} completions per prompt")
        metrics: dict[str, float] = {"selfplay/round": float(t + 1)}
        if self.game == "spo":
            mats = judge_matrices(self.judge, prompts, [[c.text for c in s] for s in samples])
            reward = torch.stack([win_rates(m) for m in mats]).float()  # (G, K)
        else:
            if self.game == "nash_md":
                assert self.opponent_fn is not None
                opponents = self.opponent_fn(prompts, seed + 1)
            else:
                assert self.snapshots is not None and opponent is not None
                with self.snapshots.using(opponent):
                    opponents = [s[0] for s in self.sample_fn(prompts, seed + 1, 1)]
                metrics["selfplay/phase"] = 0.0 if opponent == "k" else 1.0
            if len(opponents) != len(prompts):
                raise ValueError("the opponent sampler must return one completion per prompt")
            probs = self.judge.compare_batch(
                [p for p in prompts for _ in range(self.k)],
                [c.text for s in samples for c in s],
                [o.text for o in opponents for _ in range(self.k)],
            )
            values = [float(p) for p in probs]
            if len(values) != len(prompts) * self.k or any(math.isnan(p) or not 0.0 <= p <= 1.0 for p in values):
                raise DataError("the judge must return one probability P(y ≻ y') in [0, 1] per sample")
            reward = torch.tensor(values, dtype=torch.float32).reshape(len(prompts), self.k)
            metrics["selfplay/opponent_tokens"] = sum(len(o.token_ids) for o in opponents) / len(opponents)
        groups = []
        for j, (prompt, comps) in enumerate(zip(prompts, samples, strict=True)):
            prompt_ids = self.tokenizer.prompt_ids(prompt, start + j)
            ex = self.tokenizer.from_ids(start + j, prompt_ids, [list(c.token_ids) for c in comps])
            if ex is None:  # pragma: no cover - keep_end cuts rather than skips
                raise DataError("a sample did not fit train.max_length", row=start + j)
            groups.append((ex.prompt_ids, list(ex.completions)))
        g = len(groups)
        sequences = collate_sequences(groups, self.layout, self.pad_id)
        batch = ExampleBatch(
            batch_kind="samples",
            sequences=sequences,
            num_examples=g,
            index=torch.tensor([start + j for j in range(g)], dtype=torch.long),
            weight=torch.ones(g * self.k),
        )
        # sequence k·G + g is sample k of prompt g
        batch.meta["reward"] = reward.t().reshape(-1)
        batch.meta["group"] = torch.arange(g).repeat(self.k)
        if self.game == "nash_mp":
            assert self.snapshots is not None and self.score_fn is not None
            with self.snapshots.using("k"):
                batch.meta["anchor"] = self.score_fn(batch)
        lengths = [len(c) for _, comps in groups for c in comps]
        metrics["selfplay/reward"] = float(reward.mean())
        metrics["selfplay/completion_tokens"] = sum(lengths) / len(lengths)
        self._last = metrics
        return batch

    def metrics(self) -> dict[str, float]:
        return dict(self._last)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "type": "selfplay",
            "game": self.game,
            "position": self.position,
            "global_batch": self.global_batch,
            "num_prompts": len(self.prompts),
            "seed": self.seed,
            "steps_per_round": self.steps_per_round,
            "round": self.round,
            "half": self.half,
        }
        if self.snapshots is not None and self.snapshots.saved:
            state["tensors"] = self.snapshots.tensors()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {
            "game": self.game,
            "global_batch": self.global_batch,
            "num_prompts": len(self.prompts),
            "steps_per_round": self.steps_per_round,
        }
        for key, value in mine.items():
            if state.get(key) != value:
                raise DataError(
                    f"checkpoint was written with {key}={state.get(key)}, this run has {value}; "
                    "resume needs the same algorithm, prompts, rounds and global batch size"
                )
        self.position = int(state["position"])
        self.round, self.half = int(state.get("round", -1)), int(state.get("half", -1))
        if self.snapshots is not None:
            tensors = state.get("tensors") or {}
            if self.round >= 0 and not tensors:
                raise DataError("the checkpoint holds no Nash-MP snapshots for its round")
            self.snapshots.load_tensors(tensors)
