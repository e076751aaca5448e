"""Data schedules: where the training loop's next batch comes from.

A schedule hands each process its share of the next *global* micro-batch (``batch_size × world_size``
examples) and can save / restore its position as JSON, so a resumed run sees exactly the batches an
uninterrupted run would have seen, and a 2-process run sees the same global batches as a 1-process run
with twice the per-device batch.

The offline schedule's example stream is a fixed function of (seed, position): epoch e is the
permutation ``randperm(N, seed + e)``, and the stream is the concatenation of the epochs' permutations;
global micro-batch b is stream positions ``[b·GB, (b+1)·GB)``. Batches straddle epoch ends rather than
dropping or padding the last partial batch, so every example is used equally often.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..data.collate import ExampleBatch, attach_kl_partners, collate_examples
from ..data.tokenize import TokenizedExample
from ..errors import DataError

GatherFn = Callable[[Any], list[Any]]  # one picklable object from every process, in rank order
SEED_STRIDE = 7_919  # process r samples with seed + r·SEED_STRIDE: the processes' draws differ


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Process ``rank``'s contiguous share ``[lo, hi)`` of ``n`` items (the first ``n % world_size`` take one more)."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + int(rank < extra)


def each_process(
    fn: Callable[[list[Any]], Sequence[Any]], items: Sequence[Any], rank: int, world_size: int, gather: GatherFn | None
) -> list[Any]:
    """``fn`` (one result per item) over this process's contiguous share of ``items``; with several processes the
    shares' results are gathered, so every process returns the results of all items in item order. Sampling and
    judging a round or a rollout this way costs each process its share, never the whole."""
    lo, hi = shard_bounds(len(items), rank, world_size) if gather is not None else (0, len(items))
    if gather is None:
        return list(fn(list(items))) if items else []
    try:
        mine: Any = list(fn(list(items[lo:hi]))) if hi > lo else []
    except Exception as exc:  # the others must not wait in the gather for a process that stopped
        gather(_Stopped(str(exc)))
        raise
    parts = gather(mine)
    for r, part in enumerate(parts):
        if isinstance(part, _Stopped):
            from ..errors import TrainingError

            raise TrainingError(f"process {r} stopped: {part.message}")
    return [x for part in parts for x in part]


class _Stopped:
    """What a process whose share failed hands the gather instead of results (its error's message)."""

    def __init__(self, message: str):
        self.message = message


def gather_objects(acc: Any) -> GatherFn | None:
    """The :data:`GatherFn` of an Accelerator's processes (``torch.distributed.all_gather_object``), None for one."""
    if acc.num_processes == 1:
        return None
    import torch.distributed as dist

    def gather(obj: Any) -> list[Any]:
        out: list[Any] = [None] * acc.num_processes
        dist.all_gather_object(out, obj)
        return out

    return gather


class Schedule(ABC):
    """The source of training batches. ``batch_kind`` is the kind of :class:`ExampleBatch` it produces
    (:data:`preflab.training.step.BATCH_KIND_OF_INPUTS`)."""

    batch_kind: str = "pair"

    @abstractmethod
    def next_batch(self) -> ExampleBatch:
        """This process's part of the next global micro-batch."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""

    def steps_for_epochs(self, epochs: float, grad_accum: int) -> int | None:
        """Optimizer steps that make ``epochs`` passes over the data (None when the data is unbounded)."""
        return None

    def metrics(self) -> dict[str, float]:
        """Schedule-specific metrics of the last batch (e.g. the online judge's verdicts)."""
        return {}


class ShuffledStream:
    """Stream positions → row indices: the concatenation of per-epoch permutations ``randperm(n, seed, epoch)``."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self._epoch, self._perm = -1, torch.arange(0)

    def _order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            if self.shuffle:
                gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                self._perm = torch.randperm(self.n, generator=gen)
            else:
                self._perm = torch.arange(self.n)
            self._epoch = epoch
        return self._perm

    def rows(self, start: int, count: int) -> list[int]:
        return [int(self._order(pos // self.n)[pos % self.n]) for pos in range(start, start + count)]


class OfflineSchedule(Schedule):
    """Batches from a fixed tokenised dataset, shuffled per epoch by the run's seed."""

    def __init__(
        self,
        examples: Sequence[TokenizedExample],
        batch_kind: str,
        batch_size: int,
        *,
        seed: int = 0,
        layout: str = "padded",
        pad_id: int = 0,
        world_size: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        with_kl: bool = False,
    ):
        if not examples:
            raise DataError("no training examples (every row was skipped or the dataset is empty)")
        if batch_kind not in ("pair", "unpaired", "ranking", "demonstration"):
            raise ValueError(
                "the offline schedule produces 'pair', 'unpaired', 'ranking' or 'demonstration' batches, "
                f"not '{batch_kind}'"
            )
        self.examples = attach_kl_partners(examples) if with_kl else list(examples)
        self.batch_kind, self.batch_size, self.seed = batch_kind, batch_size, seed
        self.layout, self.pad_id, self.shuffle = layout, pad_id, shuffle
        self.world_size, self.rank = world_size, rank
        self.position = 0  # global micro-batches served
        self.stream = ShuffledStream(len(self.examples), seed, shuffle)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def epoch(self) -> float:
        """Fractional epochs consumed so far."""
        return self.position * self.global_batch / len(self.examples)

    def next_batch(self) -> ExampleBatch:
        batch = self._batch(self.stream, self.position)
        self.position += 1
        return batch

    def _batch(self, stream: ShuffledStream, position: int) -> ExampleBatch:
        rows = stream.rows(position * self.global_batch + self.rank * self.batch_size, self.batch_size)
        return collate_examples([self.examples[i] for i in rows], self.batch_kind, self.layout, self.pad_id)

    def first_epoch(self) -> Iterator[ExampleBatch]:
        """This process's micro-batches of the first pass over the data, exactly as training draws them
        (same rows, same layout and padding), without moving this schedule's position. Scoring a cached
        reference with them makes step 1's policy and reference log-probs bitwise equal under bf16."""
        stream = ShuffledStream(len(self.examples), self.seed, self.shuffle)
        for position in range(math.ceil(len(self.examples) / self.global_batch)):
            yield self._batch(stream, position)

    def steps_for_epochs(self, epochs: float, grad_accum: int) -> int:
        return max(1, math.ceil(epochs * len(self.examples) / (self.global_batch * grad_accum)))

    def state_dict(self) -> dict[str, Any]:
        return {
            "type": "offline",
            "position": self.position,
            "global_batch": self.global_batch,
            "num_examples": len(self.examples),
            "seed": self.seed,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, mine in (("global_batch", self.global_batch), ("num_examples", len(self.examples))):
            if state.get(key) != mine:
                raise DataError(
                    f"checkpoint was written with {key}={state.get(key)}, this run has {mine}; "
                    "resume needs the same data and global batch size"
                )
        self.position = int(state["position"])


def eval_batches(
    examples: Sequence[TokenizedExample],
    batch_kind: str,
    batch_size: int,
    *,
    layout: str,
    pad_id: int,
    world_size: int = 1,
    rank: int = 0,
    with_kl: bool = False,
) -> Iterator[ExampleBatch]:
    """Each process's share of an in-order pass over ``examples`` (rows ``rank::world_size``)."""
    items = attach_kl_partners(examples) if with_kl else list(examples)
    mine = items[rank::world_size]
    for start in range(0, len(mine), batch_size):
        yield collate_examples(mine[start : start + batch_size], batch_kind, layout, pad_id)
