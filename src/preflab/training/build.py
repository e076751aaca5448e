"""Assemble a run: accelerator, objective, policy, tokenised data, schedule, reference, optimizer."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import algorithms as table
from ..algorithms import REWARD, Algorithm
from ..data.collate import ExampleBatch
from ..data.tokenize import TokenizeOptions, Tokenizer, TokenizeStats, tokenize_records
from ..errors import CheckpointError, ConfigError
from ..models.casts import FrozenCasts
from ..models.compile import compile_blocks, is_compiled
from ..models.logprobs import SequenceScorer
from ..models.policy import (
    AdapterDisabledReference,
    CachedReference,
    FrozenCopyReference,
    NoReference,
    Reference,
    adapters_are_identity,
    build_reference_table,
    examples_fingerprint,
    has_active_dropout,
    is_peft,
)
from ..models.reward import RewardScorer
from ..objectives import ObjectiveSpec, get_objective
from . import setup
from .iterative import AnchoredReference, IterativeSchedule, PreviousIterateReference
from .lm_algorithms import SAMPLED, configured_algorithm, lm_schedule, objective_params, reward_head
from .online import OnlineSchedule, prompts_of
from .rundir import RunStart, start_run
from .schedule import OfflineSchedule, Schedule, eval_batches
from .selfplay import SelfPlaySchedule, Snapshots
from .step import EXAMPLE_KINDS


@dataclass
class Parts:
    """Everything the loop needs, built from a config."""

    accelerator: Any
    spec: ObjectiveSpec
    params: Any
    policy: torch.nn.Module  # the HF model (a peft model with LoRA), unwrapped
    tokenizer: Any
    scorer: torch.nn.Module  # SequenceScorer or RewardScorer, prepared by Accelerate (DDP-wrapped when distributed)
    trainable: list[torch.nn.Parameter]
    optimizer: Any
    lr_scheduler: Any
    schedule: Schedule
    reference: Reference
    total_steps: int
    eval_batches: Callable[[], Iterator[ExampleBatch]]
    has_eval: bool
    tokenize_stats: TokenizeStats | None
    casts: list[FrozenCasts] = field(default_factory=list)  # bf16 copies of frozen weights; release() them
    start: RunStart | None = None  # the run's provenance, and the checkpoint a fork starts from

    def release_casts(self) -> None:
        """Drop the frozen-weight copies (before the weights change: LoRA merge, end of training)."""
        for c in self.casts:
            c.release()


def make_accelerator(cfg: Any) -> Any:
    """A fresh Accelerator for this run (mixed precision may differ between runs of one process).

    Without a GPU (or with ``ACCELERATE_USE_CPU=true``) it runs on the CPU, and when launched as several
    processes (``accelerate launch --multi_gpu --num_processes N``, ``torchrun``) it uses gloo (MULTI_CPU).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import parse_flag_from_env

    if PartialState._shared_state:  # the caller (or an earlier run) already set up the processes
        cpu = PartialState().device.type == "cpu"
    else:
        cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    setup.check_trackers(cfg.train.report_to)
    AcceleratorState._reset_state(reset_partial_state=False)
    bf16 = setup.use_bf16(cfg.train.bf16, torch.device("cpu") if cpu else torch.device("cuda"))
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision="bf16" if bf16 else "no",
        log_with=list(cfg.train.report_to) or None,
        project_dir=cfg.output_dir,
    )
    if accelerator.num_processes > 1:
        setup.destroy_gloo_group_at_exit()
    return accelerator


def _objective(cfg: Any) -> tuple[Algorithm, ObjectiveSpec, Any]:
    """The run's row of the algorithm table, its objective and the objective's parameters."""
    algo = configured_algorithm(cfg)  # an open row (online_dpo) with the objective the config chose
    return algo, get_objective(algo.objective), objective_params(algo, cfg.objective.params)


def _reference(
    mode: str,
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    passes: list[list[Any]],
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> Reference:
    """The reference policy of ``mode``. ``passes`` (train and eval examples) are what a cache must cover."""
    train = cfg.train
    if mode == "none":
        return NoReference()
    if mode == "adapters_disabled":
        return AdapterDisabledReference(scorer, acc.autocast)
    if mode == "frozen_copy":
        ref = FrozenCopyReference(policy, scorer.chunked_head, train.logprob_chunk_size, acc.autocast)
        ref.scorer.to(acc.device)
        return ref
    return _cached_reference(cfg, acc, scorer, policy, passes, batches)


def _initial_policy(cfg: Any, acc: Any, scorer: SequenceScorer, policy: torch.nn.Module) -> Reference:
    """What scores the reference cache: the policy as it is before its first update (for LoRA whose adapters
    still add nothing, with adapters on: the same kernels as the first training step, so its loss is exactly
    the one at π = π_ref), else the base model (adapters off). A compiled policy without dropout is scored
    through its training graph (one compilation, not a second one for inference)."""
    if is_peft(policy) and not adapters_are_identity(policy):
        return AdapterDisabledReference(scorer, acc.autocast)
    training_graph = is_compiled(policy) and not has_active_dropout(policy)
    return FrozenCopyReference(
        policy,
        scorer.chunked_head,
        cfg.train.logprob_chunk_size,
        acc.autocast,
        copy=False,
        training_graph=training_graph,
    )


def _cached_reference(
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    passes: list[list[Any]],
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> CachedReference:
    """Score every (row, completion slot) once with the initial policy — before any update or checkpoint
    load — and keep the table in ``output_dir/reference_logprobs.safetensors`` (reused when the data match)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    everything = [ex for part in passes for ex in part]
    fingerprint = examples_fingerprint(everything, extra=f"{cfg.model.name_or_path}|{cfg.objective.name}")
    path = Path(cfg.output_dir) / "reference_logprobs.safetensors"
    if path.is_file():
        with safe_open(str(path), "pt") as f:
            stored = (f.metadata() or {}).get("fingerprint")
        if stored == fingerprint:
            return CachedReference(load_file(str(path))["table"])
    if cfg.train.resume and not is_peft(policy) and any((Path(cfg.output_dir) / "checkpoints").glob("step-*")):
        raise CheckpointError(
            "resuming full fine-tuning with a cached reference needs the run's own reference "
            "log-probs (the initial weights are gone)",
            file=str(path),
        )
    source = _initial_policy(cfg, acc, scorer, policy)
    rows = max(ex.index for ex in everything) + 1
    table = build_reference_table(source, (b.to(acc.device) for part in passes for b in batches(part)), rows)
    table = _merge_tables(acc, table)
    if acc.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({"table": table}, str(tmp), metadata={"fingerprint": fingerprint})
        tmp.replace(path)
    return CachedReference(table)


def _merge_tables(acc: Any, table: torch.Tensor) -> torch.Tensor:
    """Each process scored its share of the rows (NaN elsewhere): every process gets the whole table."""
    filled = (~torch.isnan(table)).double()
    if acc.num_processes > 1:
        table = acc.reduce(torch.nan_to_num(table.double()).to(acc.device), "sum").cpu()
        filled = acc.reduce(filled.to(acc.device), "sum").cpu()
    return torch.where(filled > 0, table.double() / filled.clamp_min(1), torch.nan).float()


def _policy_now(
    cfg: Any,
    acc: Any,
    scorer: SequenceScorer,
    policy: torch.nn.Module,
    batches: Callable[[list[Any]], Iterator[ExampleBatch]],
) -> Callable[[list[Any]], torch.Tensor]:
    """Scores a round's pairs with the policy as it is now (eval mode, adapters on, no grad): the round's
    previous-iterate reference π_t, exact because π_t does not change during the round."""
    training_graph = is_compiled(policy) and not has_active_dropout(policy)
    source = FrozenCopyReference(
        policy,
        scorer.chunked_head,
        cfg.train.logprob_chunk_size,
        acc.autocast,
        copy=False,
        training_graph=training_graph,
    )

    def score(examples: list[Any]) -> torch.Tensor:
        table = build_reference_table(source, (b.to(acc.device) for b in batches(examples)), len(examples))
        return _merge_tables(acc, table)

    def sequences(batch: ExampleBatch) -> torch.Tensor:  # one batch's sequences (Nash-MP's log π^k), on the CPU
        with source.autocast():
            return source.logprobs(batch.to(acc.device)).float().cpu()

    score.sequences = sequences  # type: ignore[attr-defined]
    return score


def annotator_ids(
    records: list[Any], examples: list[Any], eval_records: list[Any] | None, eval_examples: list[Any], data: Any
) -> tuple[list[Any], list[Any]]:
    """Each example with its annotator's index among the training data's sorted annotator names; a pair without
    an annotator (or an eval pair whose annotator never labelled training data) is a one-line DataError."""
    from ..errors import DataError

    def name(record: Any, row: int, what: str, source: str | None) -> str:
        who = getattr(record, "annotator", None)
        if not who:
            raise DataError(
                f"{what}: a mixture reward model (maxmin_em) needs the annotator of every pair",
                file=source,
                row=row,
                field="annotator",
            )
        return str(who)

    ids = {a: i for i, a in enumerate(sorted({name(r, i, "training data", data.path) for i, r in enumerate(records)}))}
    train = [replace(ex, annotator=ids[records[ex.index].annotator]) for ex in examples]
    held: list[Any] = []
    offset = len(records)
    for ex in eval_examples:
        row = ex.index - offset
        who = name(eval_records[row], row, "eval data", data.eval_path or data.path)  # type: ignore[index]
        if who not in ids:
            raise DataError(
                f"eval data: annotator '{who}' labelled no training pair, so no group is known for it",
                file=data.eval_path or data.path,
                row=row,
                field="annotator",
            )
        held.append(replace(ex, annotator=ids[who]))
    return train, held


def _suite_gold(cfg: Any, records: Any) -> Any:
    """The task suite's gold scorer when every online prompt is one of ``online.tasks``' prompts (None otherwise):
    the online schedule logs the gold reward of its samples with it."""
    from ..feedback.judges import GoldJudge
    from ..feedback.tasks import get_suite

    tasks = get_suite(cfg.online.tasks).tasks(cfg.online.num_prompts, seed=cfg.seed)
    known = {repr(t.prompt) for t in tasks}
    if not records or any(repr(getattr(r, "prompt", r)) not in known for r in records):
        return None
    return GoldJudge(tasks).score_batch


def build_parts(
    cfg: Any,
    *,
    judge: Any = None,
    records: Any = None,
    eval_records: Any = None,
    model: Any = None,
    tokenizer: Any = None,
) -> Parts:
    """Build every part of a run from ``cfg`` (see :func:`preflab.training.train`)."""
    from accelerate.utils import set_seed

    acc = make_accelerator(cfg)
    set_seed(cfg.seed)
    train = cfg.train
    algo, spec, params = _objective(cfg)
    kind = lm_schedule(algo)  # the table's data schedule picks the trainer's schedule
    previous_iterate = kind == "iterative" and cfg.iterative.reference == "previous_iterate"
    # INPO and DNO take π_t as an anchor *and* π_ref: reference.mode says how π_ref is kept
    anchored = previous_iterate and spec.inputs == "iterative_pair"
    mode = (
        "previous_iterate"
        if previous_iterate and not anchored
        else setup.reference_mode(cfg.reference.mode, spec, cfg.lora.enabled, kind)
    )
    if kind == "rollout" and params.beta == 0 and params.kl_target is None and cfg.reference.mode == "auto":
        mode = "none"  # no KL term: no reference to keep (TRL's GRPO default, β = 0)
    judge_from_cfg = kind in SAMPLED and judge is None
    if judge_from_cfg:
        from .judging import judge_from_config

        judge, task_prompts = judge_from_config(cfg)
        if records is None and cfg.data.path is None:
            records = task_prompts
    records, eval_records = setup.load_records(cfg, spec, records, eval_records, kind)
    # before the model changes (LoRA) and before anything is written to output_dir
    start = start_run(
        cfg,
        records,
        eval_records,
        model,
        judge if kind in SAMPLED else None,
        is_main=acc.is_main_process,
        barrier=acc.wait_for_everyone,
        log=acc.print,
    )
    reward = algo.model == REWARD  # a reward model: the same loop, a scorer that reads rewards instead of log-probs
    policy, tok = setup.load_policy(cfg, model, tokenizer, reward=reward, head=reward_head(algo, cfg))
    if train.compile:  # before any forward: the cached reference must be scored by the same kernels
        from ..models.loading import cache_dir

        # compiled kernels persist with preflab's other caches (not /tmp): a later run's compile is ~3x shorter
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
        if not compile_blocks(policy, memory_budget=train.compile_memory_budget):
            raise ConfigError(
                f"train.compile: no repeated decoder blocks found in {type(policy).__name__}", field="train.compile"
            )
    tk = Tokenizer(
        tok, TokenizeOptions(train.max_length, train.max_prompt_length, train.truncation, train.chat_template)
    )
    with_kl = spec.inputs == "unpaired"  # KTO's reference point z needs mismatched (x, y') partners
    examples, stats = ([], None) if kind in SAMPLED else tokenize_records(records, tk)
    eval_examples: list[Any] = []
    if eval_records:
        eval_examples, eval_stats = tokenize_records(eval_records, tk)
        offset = len(records)  # eval rows get their own indices (a cached reference keys on them)
        eval_examples = [replace(ex, index=offset + ex.index) for ex in eval_examples]
        acc.print(f"eval data: {eval_stats.summary()}")
    if stats is not None:
        acc.print(f"data: {stats.summary()}")
    from ..threads import describe

    acc.print(describe())
    if spec.inputs == "group_pairs":  # a mixture over annotator groups: every pair names its annotator
        examples, eval_examples = annotator_ids(records, examples, eval_records, eval_examples, cfg.data)

    scorer: Any = (
        RewardScorer(policy) if reward else SequenceScorer(policy, train.chunked_lm_head, train.logprob_chunk_size)
    )
    base_scorer = scorer
    if kind == "rollout" and algo.objective == "ppo":  # PPO's critic: a value head on the shared trunk
        from ..models.value import ValueHead

        scorer.value_head = ValueHead(
            policy.config.hidden_size, params.value_head, params.num_bins, params.v_min, params.v_max
        )
    example_kind = EXAMPLE_KINDS[spec.inputs]
    optimizer = setup.build_optimizer(scorer, train)
    scorer, optimizer = acc.prepare(scorer, optimizer)
    eval_bs = train.eval_batch_size or train.batch_size

    def batches(items: list[Any]) -> Iterator[ExampleBatch]:
        return eval_batches(
            items,
            example_kind,
            eval_bs,
            layout=train.layout,
            pad_id=tok.pad_token_id,
            world_size=acc.num_processes,
            rank=acc.process_index,
            with_kl=with_kl,
        )

    round_reference = PreviousIterateReference() if previous_iterate else None
    ref_holder: dict[str, Reference] = {}  # the run's π_ref, for samplers built before it (Nash-MD, XPO)
    if kind == "online":
        xpo = spec.inputs == "xpo_pair"
        schedule: Schedule = OnlineSchedule(
            prompts_of(records),
            _sampler(cfg, acc, scorer, tok),
            judge,
            tk,
            train.batch_size,
            seed=cfg.seed,
            layout=train.layout,
            world_size=acc.num_processes,
            rank=acc.process_index,
            soft_labels=cfg.online.soft_labels,
            samples_per_prompt=2 if xpo else cfg.online.samples_per_prompt,
            pairs=cfg.online.pairs,
            gold=_suite_gold(cfg, records),
            explore_fn=_mixture_sampler(cfg, acc, scorer, tok, ref_holder, 1.0) if xpo else None,
        )
    elif kind == "self_play":
        it = cfg.iterative
        game = {table.GEOMETRIC_MIXTURE: "nash_md", table.PROX_SNAPSHOTS: "nash_mp", table.NONE: "spo"}[algo.reference]
        snapshots = Snapshots(policy) if game == "nash_mp" else None
        score = _policy_now(cfg, acc, base_scorer, policy, batches) if game == "nash_mp" else None
        schedule = SelfPlaySchedule(
            prompts_of(records),
            _sampler(cfg, acc, scorer, tok),
            judge,
            tk,
            train.batch_size,
            game=game,
            rounds=it.rounds,
            samples_per_prompt=it.samples_per_prompt,
            grad_accum=train.grad_accum,
            prompts_per_round=it.prompts_per_round,
            steps_per_round=it.steps_per_round,
            opponent_fn=(
                _mixture_sampler(cfg, acc, scorer, tok, ref_holder, it.mixture_coef) if game == "nash_md" else None
            ),
            snapshots=snapshots,
            score_fn=(lambda batch: score.sequences(batch)) if score is not None else None,
            seed=cfg.seed,
            layout=train.layout,
            world_size=acc.num_processes,
            rank=acc.process_index,
        )
    elif kind == "iterative":
        it = cfg.iterative
        schedule = IterativeSchedule(
            prompts_of(records),
            _sampler(cfg, acc, scorer, tok),
            judge,
            tk,
            train.batch_size,
            rounds=it.rounds,
            samples_per_prompt=it.samples_per_prompt,
            grad_accum=train.grad_accum,
            prompts_per_round=it.prompts_per_round,
            steps_per_round=it.steps_per_round,
            pairs=it.pairs,
            soft_labels=cfg.online.soft_labels,
            reference=round_reference,
            score_fn=_policy_now(cfg, acc, base_scorer, policy, batches) if previous_iterate else None,
            seed=cfg.seed,
            layout=train.layout,
            world_size=acc.num_processes,
            rank=acc.process_index,
        )
    elif kind == "rollout":
        from .rollouts import make_rollout_schedule

        built: list[Reference] = []  # the reference is built below; the schedule's first rollout comes later
        schedule = make_rollout_schedule(
            cfg,
            acc,
            scorer,
            lambda: built[0],
            tok,
            tk,
            judge,
            prompts_of(records),
            algo.name,
            params,
            from_config=judge_from_cfg,
        )
    else:
        schedule = OfflineSchedule(
            examples,
            example_kind,
            train.batch_size,
            seed=cfg.seed,
            layout=train.layout,
            pad_id=tok.pad_token_id,
            world_size=acc.num_processes,
            rank=acc.process_index,
            with_kl=with_kl,
        )
    if isinstance(schedule, IterativeSchedule | SelfPlaySchedule):
        total = schedule.total_steps
    else:
        total = train.max_steps or schedule.steps_for_epochs(train.epochs, train.grad_accum)
    if total is None:
        raise ConfigError("an online schedule has no epochs: set train.max_steps", field="train.max_steps")
    passes = [p for p in (examples, eval_examples) if p]

    def reference_batches(items: list[Any]) -> Iterator[ExampleBatch]:
        # training rows are scored in the batches training starts with (bitwise-equal step-1 log-probs)
        if items is examples and isinstance(schedule, OfflineSchedule):
            return schedule.first_epoch()
        return batches(items)

    # Frozen weights (LoRA's base, a frozen reference copy) are cast to bf16 once, not at every autocast forward;
    # a frozen copy is deep-copied from the policy first, so the policy's casts come after it.
    bf16 = acc.mixed_precision == "bf16"
    casts = [FrozenCasts(policy)] if bf16 and mode != "frozen_copy" else []
    reference = round_reference or _reference(mode, cfg, acc, base_scorer, policy, passes, reference_batches)
    if anchored:
        initial = _reference(mode, cfg, acc, base_scorer, policy, passes, reference_batches)
        reference = AnchoredReference(initial, round_reference)
    if kind == "rollout":
        built.append(reference)
    ref_holder["ref"] = reference.initial if isinstance(reference, AnchoredReference) else reference
    if bf16 and mode == "frozen_copy":
        frozen = reference.initial if isinstance(reference, AnchoredReference) else reference
        casts = [FrozenCasts(policy), FrozenCasts(frozen.scorer.model)]
    return Parts(
        accelerator=acc,
        spec=spec,
        params=params,
        policy=policy,
        tokenizer=tok,
        scorer=scorer,
        trainable=[p for p in scorer.parameters() if p.requires_grad],
        optimizer=optimizer,
        lr_scheduler=setup.build_scheduler(optimizer.optimizer, train, total),
        schedule=schedule,
        reference=reference,
        total_steps=total,
        eval_batches=lambda: batches(eval_examples),
        has_eval=bool(eval_examples),
        tokenize_stats=stats,
        casts=casts,
        start=start,
    )


def _mixture_sampler(
    cfg: Any, acc: Any, scorer: Any, tok: Any, holder: dict[str, Reference], mix: float
) -> Callable[[list[Any], int], list[Any]]:
    """One completion per prompt from the per-token geometric mixture π^{1−m} π_ref^{m} of the policy now and
    the run's π_ref (:mod:`preflab.generation.mixture`): Nash-MD's opponents, and with m = 1 XPO's π_ref
    samples. π_ref is the LoRA policy with its adapters off, or the frozen copy."""
    from ..generation.mixture import sample_mixture
    from ..generation.sampler import SamplingParams

    online = cfg.online

    def draw(prompts: list[Any], seed: int) -> list[Any]:
        model = acc.unwrap_model(scorer).model
        ref = holder["ref"]
        if isinstance(ref, AdapterDisabledReference):
            reference, context = model, model.disable_adapter
        elif isinstance(ref, FrozenCopyReference):
            reference, context = ref.scorer.model, None
        else:  # pragma: no cover - the table gives these algorithms a reference
            raise ConfigError(
                "sampling from π_ref needs reference.mode adapters_disabled or frozen_copy", field="reference.mode"
            )
        was_training = model.training
        model.eval()
        try:
            params = SamplingParams(
                max_new_tokens=online.max_new_tokens,
                temperature=online.temperature,
                top_p=online.top_p,
                seed=seed,
                n=1,
                bf16=acc.mixed_precision == "bf16",
            )
            return [
                c[0]
                for c in sample_mixture(
                    model, tok, prompts, params, mix=mix, reference=reference, reference_context=context
                )
            ]
        finally:
            model.train(was_training)

    return draw


def _sampler(cfg: Any, acc: Any, scorer: Any, tok: Any) -> Callable[..., list[list[Any]]]:
    """``n`` (default two) completions per prompt from the current policy (eval mode, no grad) for the online
    and iterative schedules."""
    from ..generation.sampler import SamplingParams, sample

    online = cfg.online

    def draw(prompts: list[Any], seed: int, n: int = 2) -> list[list[Any]]:
        model = acc.unwrap_model(scorer).model
        was_training = model.training
        model.eval()
        try:
            params = SamplingParams(
                max_new_tokens=online.max_new_tokens,
                temperature=online.temperature,
                top_p=online.top_p,
                seed=seed,
                n=n,
                bf16=acc.mixed_precision == "bf16",
            )
            return sample(model, tok, prompts, params)
        finally:
            model.train(was_training)

    return draw
