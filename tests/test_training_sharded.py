"""Schedules that sample and judge (iterative rounds, rollouts) share that work across processes: each process
samples and judges its contiguous share of the prompts, and every process ends with the same round / rollout,
the one a single process would have built from the same samples. Two threads stand in for two processes here
(``gather`` over a barrier); tests/test_training_distributed.py runs real processes."""

from __future__ import annotations

import threading

import pytest
import torch

from preflab.data.tokenize import Tokenizer
from preflab.generation.sampler import Completion
from preflab.models import tiny_tokenizer
from preflab.objectives.policy_gradient import PolicyGradientParams
from preflab.training.iterative import IterativeSchedule
from preflab.training.rollouts import RolloutSchedule
from preflab.training.schedule import each_process, shard_bounds
from test_training_utils import CountingJudge

PROMPTS = [f"Name thing {i}." for i in range(5)]


def test_shard_bounds_cover_every_item_once_in_order():
    for n in range(0, 9):
        for world in (1, 2, 3):
            spans = [shard_bounds(n, r, world) for r in range(world)]
            assert [i for lo, hi in spans for i in range(lo, hi)] == list(range(n))
            assert max(hi - lo for lo, hi in spans) - min(hi - lo for lo, hi in spans) <= 1


def _gathers(world: int):
    """``gather`` functions for ``world`` threads: each returns every thread's object in rank order."""
    slots: list = [None] * world
    barrier = threading.Barrier(world)

    def make(rank: int):
        def gather(obj):
            slots[rank] = obj
            barrier.wait()
            out = list(slots)
            barrier.wait()  # nobody overwrites a slot before everyone has read them
            return out

        return gather

    return [make(r) for r in range(world)]


def _in_threads(fns):
    out, errors = [None] * len(fns), []

    def run(i):
        try:
            out[i] = fns[i]()
        except BaseException as exc:  # pragma: no cover - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return out


def test_each_process_concatenates_the_shares_in_item_order():
    gathers = _gathers(2)
    seen: list[list[int]] = [[], []]

    def job(rank):
        def fn(part):
            seen[rank].extend(part)
            return [x * 10 for x in part]

        return lambda: each_process(fn, list(range(5)), rank, 2, gathers[rank])

    assert _in_threads([job(0), job(1)]) == [[0, 10, 20, 30, 40]] * 2
    assert seen == [[0, 1, 2], [3, 4]]


class _Sampler:
    """Completions that depend on the prompt only (not on the seed), so one and two processes draw the same; it
    records which prompts it was asked for."""

    def __init__(self, tok, k):
        self.tok, self.k, self.asked = tok, k, []

    def __call__(self, prompts, seed, n, greedy=False):
        self.asked.extend(prompts)
        out = []
        for p in prompts:
            i = PROMPTS.index(p)
            texts = ["x" * (1 + (i * 7 + j * 3) % 5) for j in range(n)]
            out.append([Completion(t, self.tok(t, add_special_tokens=False)["input_ids"], "stop") for t in texts])
        return out


def _iterative(rank, world, gather, sampler, judge, batch_size):
    tok = sampler.tok
    return IterativeSchedule(
        PROMPTS,
        sampler,
        judge,
        Tokenizer(tok),
        batch_size,
        rounds=1,
        samples_per_prompt=3,
        pairs="all",
        seed=3,
        world_size=world,
        rank=rank,
        gather=gather,
    )


def test_a_round_is_sampled_and_judged_once_across_processes_and_is_the_one_process_round():
    tok = tiny_tokenizer()
    one_sampler, one_judge = _Sampler(tok, 3), CountingJudge()
    one = _iterative(0, 1, None, one_sampler, one_judge, 4)
    one_batches = [one.next_batch() for _ in range(one.micro_per_round)]
    gathers = _gathers(2)
    samplers, judges = [_Sampler(tok, 3), _Sampler(tok, 3)], [CountingJudge(), CountingJudge()]
    scheds = [_iterative(r, 2, gathers[r], samplers[r], judges[r], 2) for r in range(2)]
    assert scheds[0].micro_per_round == one.micro_per_round  # the same global batch: 2 × 2 = 4
    per_rank = _in_threads([lambda s=s: [s.next_batch() for _ in range(s.micro_per_round)] for s in scheds])
    # each process sampled and judged its share (prompts 0-2 and 3-4), nothing twice
    assert samplers[0].asked == PROMPTS[:3] and samplers[1].asked == PROMPTS[3:]
    assert judges[0].calls == 3 * 3 and judges[1].calls == 2 * 3 and one_judge.calls == 5 * 3
    for s in scheds:  # every process holds the whole round, equal to the one-process round
        assert [ex.completions for ex in s.data.examples] == [ex.completions for ex in one.data.examples]
        assert torch.equal(s.data.winrates, one.data.winrates)
        assert s.data.metrics == one.data.metrics
    # global micro-batch b = rank 0's rows then rank 1's rows = the one-process batch b
    for b, whole in enumerate(one_batches):
        assert per_rank[0][b].index.tolist() + per_rank[1][b].index.tolist() == whole.index.tolist()


def _rollout(rank, world, gather, sampler, judge, batch_size, scored):
    tok = sampler.tok

    def score(batch):
        scored[rank].append(batch.sequences.num_sequences)  # per token: −0.1 × its position in the completion
        lengths = batch.sequences.completion_lengths.tolist()
        return torch.cat([-0.1 * torch.arange(n, dtype=torch.float32) for n in lengths]), None

    return RolloutSchedule(
        PROMPTS[:4],
        sampler,
        judge,
        Tokenizer(tok),
        batch_size,
        algorithm="grpo",
        params=PolicyGradientParams(beta=0.0),
        score_fn=score,
        ref_fn=lambda b: None,
        group_size=3,
        prompts_per_rollout=4,
        epochs=2,
        seed=1,
        world_size=world,
        rank=rank,
        gather=gather,
    )


class _LengthScore:
    name, can_score = "length", True

    def __init__(self):
        self.scored = 0

    def score_batch(self, prompts, responses):
        self.scored += len(responses)
        return [len(r) / 3 for r in responses]


def test_a_rollout_is_sampled_judged_and_scored_once_across_processes_and_is_the_one_process_rollout():
    tok = tiny_tokenizer()
    one_scored: dict = {0: []}
    one_judge = _LengthScore()
    one = _rollout(0, 1, None, _Sampler(tok, 3), one_judge, 6, one_scored)
    one_batches = [one.next_batch() for _ in range(one.micro_per_rollout)]
    gathers = _gathers(2)
    samplers, judges, scored = [_Sampler(tok, 3), _Sampler(tok, 3)], [_LengthScore(), _LengthScore()], {0: [], 1: []}
    scheds = [_rollout(r, 2, gathers[r], samplers[r], judges[r], 3, scored) for r in range(2)]
    assert scheds[0].steps_per_rollout == one.steps_per_rollout == 4  # 12 completions, 2 epochs, minibatch 6
    per_rank = _in_threads([lambda s=s: [s.next_batch() for _ in range(s.micro_per_rollout)] for s in scheds])
    order = one.rollout_prompts(0)
    assert samplers[0].asked == order[:2] and samplers[1].asked == order[2:]
    assert judges[0].scored == judges[1].scored == 6 and one_judge.scored == 12
    assert sum(scored[0]) == sum(scored[1]) == 6 and sum(one_scored[0]) == 12  # π_old scored once, shared
    for s in scheds:
        assert [ex.completions for ex in s.data.examples] == [ex.completions for ex in one.data.examples]
        for key, value in one.data.tensors.items():
            assert torch.equal(s.data.tensors[key], value), key
        assert s.metrics()["rollout/reward"] == pytest.approx(one.metrics()["rollout/reward"])
    for b, whole in enumerate(one_batches):
        assert sorted(per_rank[0][b].index.tolist() + per_rank[1][b].index.tolist()) == sorted(whole.index.tolist())
        assert not set(per_rank[0][b].index.tolist()) & set(per_rank[1][b].index.tolist())


def test_a_rollout_that_does_not_split_across_processes_names_them():
    from preflab.errors import ConfigError

    tok = tiny_tokenizer()
    with pytest.raises(ConfigError, match=r"train.batch_size × train.grad_accum × 2 processes = 10"):
        _rollout(0, 2, _gathers(2)[0], _Sampler(tok, 3), _LengthScore(), 5, {0: []})


def test_a_process_whose_share_fails_stops_the_others_instead_of_leaving_them_waiting():
    """A bad reward on process 1's prompts: process 1 raises the judge's error, process 0 a one-line error naming
    process 1 — neither waits forever in the gather."""
    from preflab.errors import DataError, TrainingError

    tok = tiny_tokenizer()

    class NaNOnLast(_LengthScore):
        def score_batch(self, prompts, responses):
            out = super().score_batch(prompts, responses)
            return [float("nan") if PROMPTS[3] in prompts else v for v in out]

    gathers = _gathers(2)
    scheds = [_rollout(r, 2, gathers[r], _Sampler(tok, 3), NaNOnLast(), 3, {0: [], 1: []}) for r in range(2)]
    errors: list = [None, None]

    def run(r):
        try:
            scheds[r].next_batch()
        except Exception as exc:
            errors[r] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    owner = 1 if PROMPTS[3] in scheds[0].rollout_prompts(0)[2:] else 0
    assert isinstance(errors[owner], DataError) and "non-finite reward" in str(errors[owner])
    other = errors[1 - owner]
    assert isinstance(other, TrainingError) and str(other).startswith(f"process {owner} stopped: ")
    assert "non-finite reward" in str(other)
