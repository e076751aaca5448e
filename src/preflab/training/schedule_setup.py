"""The run's data schedule (:mod:`preflab.training.schedule`): offline epochs over a dataset, or one of the sampled
schedules (online, iterative, self-play, rollouts) with its sampler, judge and scorers, chosen by the algorithm's
row of the table. :func:`preflab.training.build.build_parts` gathers the inputs in :class:`ScheduleInputs`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import algorithms as table
from ..data.collate import ExampleBatch
from ..models.policy import Reference
from .iterative import IterativeSchedule, PreviousIterateReference
from .online import OnlineSchedule, prompts_of
from .references import policy_now
from .samplers import mixture_sampler, policy_sampler
from .schedule import OfflineSchedule, Schedule, gather_objects
from .selfplay import SelfPlaySchedule, Snapshots


@dataclass
class ScheduleInputs:
    """What the schedules are built from: the run's config and accelerator, the algorithm's table row and objective,
    the prepared scorer (and the unwrapped one), the tokenizers, the judge and the data."""

    name: str  # offline, online, iterative, self_play or rollout (lm_algorithms.lm_schedule)
    cfg: Any
    acc: Any
    algo: Any
    spec: Any
    params: Any
    batch_kind: str
    with_kl: bool
    judge_from_cfg: bool
    scorer: Any
    base_scorer: Any
    policy: Any
    tok: Any
    tk: Any
    judge: Any
    records: list[Any]
    examples: list[Any]
    batches: Callable[[list[Any]], Iterator[ExampleBatch]]
    round_reference: PreviousIterateReference | None  # π_t of iterative rounds (INPO, DNO), scored by policy_now
    ref_holder: dict[str, Reference]  # the run's π_ref once built, for samplers made before it (Nash-MD, XPO)
    reference: Callable[[], Reference]  # the run's π_ref, built after the schedule


def build_schedule(x: ScheduleInputs) -> Schedule:
    """The schedule named by ``x.name``."""
    builders = {
        "online": _online,
        "self_play": _self_play,
        "iterative": _iterative,
        "rollout": _rollout,
    }
    return builders.get(x.name, _offline)(x)


def _processes(x: ScheduleInputs) -> dict[str, Any]:
    return {"world_size": x.acc.num_processes, "rank": x.acc.process_index}


def _sampled(x: ScheduleInputs) -> tuple[Any, ...]:
    """The leading arguments of every sampled schedule: prompts, the policy's sampler, judge, tokenizer, batch size."""
    sampler = policy_sampler(x.cfg, x.acc, x.scorer, x.tok)
    return prompts_of(x.records), sampler, x.judge, x.tk, x.cfg.train.batch_size


def _online(x: ScheduleInputs) -> Schedule:
    cfg, acc, scorer, tok = x.cfg, x.acc, x.scorer, x.tok
    xpo = x.spec.inputs == "xpo_pair"
    return OnlineSchedule(
        *_sampled(x),
        seed=cfg.seed,
        layout=cfg.train.layout,
        **_processes(x),
        soft_labels=cfg.online.soft_labels,
        samples_per_prompt=2 if xpo else cfg.online.samples_per_prompt,
        pairs=cfg.online.pairs,
        gold=suite_gold(cfg, x.records),
        explore_fn=mixture_sampler(cfg, acc, scorer, tok, x.ref_holder, 1.0) if xpo else None,
    )


def _self_play(x: ScheduleInputs) -> Schedule:
    cfg, acc, scorer, tok, it = x.cfg, x.acc, x.scorer, x.tok, x.cfg.iterative
    game = {table.GEOMETRIC_MIXTURE: "nash_md", table.PROX_SNAPSHOTS: "nash_mp", table.NONE: "spo"}[x.algo.reference]
    snapshots = Snapshots(x.policy) if game == "nash_mp" else None
    score = policy_now(cfg, acc, x.base_scorer, x.policy, x.batches) if game == "nash_mp" else None
    return SelfPlaySchedule(
        *_sampled(x),
        game=game,
        rounds=it.rounds,
        samples_per_prompt=it.samples_per_prompt,
        grad_accum=cfg.train.grad_accum,
        prompts_per_round=it.prompts_per_round,
        steps_per_round=it.steps_per_round,
        opponent_fn=(
            mixture_sampler(cfg, acc, scorer, tok, x.ref_holder, it.mixture_coef) if game == "nash_md" else None
        ),
        snapshots=snapshots,
        score_fn=(lambda batch: score.sequences(batch)) if score is not None else None,
        seed=cfg.seed,
        layout=cfg.train.layout,
        **_processes(x),
    )


def _iterative(x: ScheduleInputs) -> Schedule:
    cfg, acc, it = x.cfg, x.acc, x.cfg.iterative
    return IterativeSchedule(
        *_sampled(x),
        rounds=it.rounds,
        samples_per_prompt=it.samples_per_prompt,
        grad_accum=cfg.train.grad_accum,
        prompts_per_round=it.prompts_per_round,
        steps_per_round=it.steps_per_round,
        pairs=it.pairs,
        soft_labels=cfg.online.soft_labels,
        reference=x.round_reference,
        score_fn=policy_now(cfg, acc, x.base_scorer, x.policy, x.batches) if x.round_reference is not None else None,
        seed=cfg.seed,
        layout=cfg.train.layout,
        **_processes(x),
        gather=gather_objects(acc),
    )


def _rollout(x: ScheduleInputs) -> Schedule:
    from .rollout_setup import make_rollout_schedule

    return make_rollout_schedule(
        x.cfg,
        x.acc,
        x.scorer,
        x.reference,
        x.tok,
        x.tk,
        x.judge,
        prompts_of(x.records),
        x.algo.name,
        x.params,
        from_config=x.judge_from_cfg,
    )


def _offline(x: ScheduleInputs) -> Schedule:
    train = x.cfg.train
    return OfflineSchedule(
        x.examples,
        x.batch_kind,
        train.batch_size,
        seed=x.cfg.seed,
        layout=train.layout,
        pad_id=x.tok.pad_token_id,
        **_processes(x),
        with_kl=x.with_kl,
    )


def suite_gold(cfg: Any, records: Any) -> Any:
    """The task suite's gold scorer when every online prompt is one of ``online.tasks``' prompts (None otherwise):
    the online schedule logs the gold reward of its samples with it."""
    from ..feedback.judges import GoldJudge
    from ..feedback.tasks import get_suite

    tasks = get_suite(cfg.online.tasks).tasks(cfg.online.num_prompts, seed=cfg.seed)
    known = {repr(t.prompt) for t in tasks}
    if not records or any(repr(getattr(r, "prompt", r)) not in known for r in records):
        return None
    return GoldJudge(tasks).score_batch
