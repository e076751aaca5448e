"""Construct a run's parts from its config: accelerator, policy (+ LoRA), records, tokenised data, schedule,
reference, optimizer and learning-rate schedule, gathered in :class:`Parts` by :func:`build_parts`.

What the config means (the objective, precision, the reference mode, the data kind) is decided in
:mod:`preflab.training.resolve`; the loop (:mod:`preflab.training.loop`) only wires the parts together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .. import algorithms as table
from ..algorithms import REWARD
from ..data.collate import ExampleBatch
from ..data.tokenize import TokenizeOptions, Tokenizer, TokenizeStats, tokenize_records
from ..errors import ConfigError, DataError
from ..models.casts import FrozenCasts
from ..models.compile import compile_blocks
from ..models.logprobs import SequenceScorer
from ..models.policy import Reference
from ..models.reward import RewardScorer
from ..objectives import ObjectiveSpec
from .iterative import AnchoredReference, IterativeSchedule, PreviousIterateReference
from .lm_algorithms import SAMPLED, lm_schedule, reward_head
from .online import OnlineSchedule, prompts_of
from .references import policy_now, reference_for_mode
from .resolve import DATA_KIND_OF_INPUTS, check_trackers, resolve_objective, run_reference, use_bf16
from .rundir import RunStart, start_run
from .samplers import mixture_sampler, policy_sampler
from .schedule import OfflineSchedule, Schedule, eval_batches, gather_objects
from .selfplay import SelfPlaySchedule, Snapshots
from .step import BATCH_KIND_OF_INPUTS


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
    check_trackers(cfg.train.report_to)
    AcceleratorState._reset_state(reset_partial_state=False)
    bf16 = use_bf16(cfg.train.bf16, torch.device("cpu") if cpu else torch.device("cuda"))
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision="bf16" if bf16 else "no",
        log_with=list(cfg.train.report_to) or None,
        project_dir=cfg.output_dir,
    )
    if accelerator.num_processes > 1:
        destroy_gloo_group_at_exit()
    return accelerator


def load_policy(
    cfg: Any, model: Any = None, tokenizer: Any = None, *, reward: bool = False, head: Any = None
) -> tuple[Any, Any]:
    """The model to train (fp32 master weights unless model.dtype says otherwise) and tokenizer, LoRA applied:
    the policy, or (``reward``) a reward model with ``head`` (:mod:`preflab.models.reward_heads`; default a
    one-logit scalar head) whose ``score`` layer LoRA trains in full."""
    from ..models import load_model, load_reward_model, load_tokenizer
    from ..models.policy import apply_lora

    if tokenizer is None:
        tokenizer = load_tokenizer(
            cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code, revision=cfg.model.revision
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if reward and head is None:
        from ..models.reward_heads import ScalarHead

        head = ScalarHead()
    if model is None:
        load = load_reward_model if reward else load_model
        extra = {"pad_token_id": tokenizer.pad_token_id, "num_labels": head.num_labels} if reward else {}
        model = load(
            cfg.model.name_or_path,
            dtype=cfg.model.dtype,
            trust_remote_code=cfg.model.trust_remote_code,
            revision=cfg.model.revision,
            **extra,
        )
    if reward:
        from ..models.reward import check_tokenizer

        check_tokenizer(model, tokenizer, cfg.model.name_or_path, field="model.name_or_path")
        mark_reward_model(model, tokenizer, cfg.train, head)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = cfg.lora
    if lora.enabled:
        model = apply_lora(
            model,
            r=lora.r,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
            modules_to_save=lora.modules_to_save,
            task_type="SEQ_CLS" if reward else "CAUSAL_LM",
        )
    else:
        model.requires_grad_(True)
    own_trainable_weights(model)
    return model, tokenizer


def own_trainable_weights(model: Any) -> int:
    """Copy the trainable CPU parameters into memory of their own; returns how many were copied.

    ``from_pretrained`` leaves a safetensors checkpoint's weights in a copy-on-write mapping of the file, so the
    first optimizer step that writes them faults every 4 KiB page in one by one: SmolLM2-135M's first AdamW step
    took 3.5–4.9 s here (Intel Xeon, 2 cores, 2026-12-06) against 0.1 s for the later ones, and the copy takes
    0.2 s. Tied weights stay tied (one ``Parameter``); frozen weights (LoRA's base) stay mapped."""
    copied = 0
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.device.type == "cpu":
                param.data = param.data.clone()
                copied += 1
    return copied


def mark_reward_model(model: Any, tokenizer: Any, train: Any, head: Any = None) -> None:
    """Check that ``model`` is a sequence classifier with ``head.num_labels`` outputs (one for the default scalar
    head) and record, in its config (saved in config.json), its head and how its training data were tokenised,
    so a judge reads the same outputs of the same ids."""
    from ..models.reward import REWARD_CONFIG_KEY
    from ..models.reward_heads import ScalarHead

    head = head or ScalarHead()
    config = getattr(model, "config", None)
    labels = getattr(config, "num_labels", None) if config is not None else None
    if labels != head.num_labels or not hasattr(model, "score") and not hasattr(model, "classifier"):
        what = (
            "a one-logit reward model (a sequence-classification model with num_labels=1)"
            if head.num_labels == 1
            else f"a sequence-classification model with the {head.num_labels} outputs of the '{head.name}' reward head"
        )
        raise ConfigError(f"{type(model).__name__} (num_labels={labels}) is not {what}", field="model.name_or_path")
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id
    setattr(
        config,
        REWARD_CONFIG_KEY,
        {
            "tokenization": "preflab",
            "chat_template": train.chat_template,
            "max_length": train.max_length,
            "max_prompt_length": train.max_prompt_length,
            "head": head.to_dict(),
        },
    )


def load_records(
    cfg: Any, spec: ObjectiveSpec, records: Any = None, eval_records: Any = None, schedule: str = "offline"
) -> tuple[list[Any], list[Any] | None]:
    """Training (and eval) records in the shape the objective consumes.

    ``records`` given in Python (a list of records or a :class:`preflab.data.LoadResult`) win over
    ``data.path``. Offline objectives over pairs take pairs (rankings are turned into pairs by
    ``data.rule``); unpaired objectives take unpaired records (pairs are split, as TRL does). The online
    schedule only needs prompts.
    """
    from ..data import convert, load_data

    if records is None:
        if cfg.data.path is None:
            raise DataError("no training data: set data.path (or pass records=...)", field="data.path")
        train_res, eval_res = load_data(cfg.data, seed=cfg.seed, output_dir=cfg.output_dir)
        records = train_res.records
        if eval_records is None and eval_res is not None:
            eval_records = eval_res.records
    records = list(getattr(records, "records", records))
    eval_records = list(getattr(eval_records, "records", eval_records)) if eval_records is not None else None
    check_weights(records, "training data", cfg.data.path, all_zero=schedule not in SAMPLED)
    if eval_records is not None:
        check_weights(eval_records, "eval data", cfg.data.eval_path or cfg.data.path, all_zero=False)
    target = DATA_KIND_OF_INPUTS[spec.inputs]

    def as_target(rows: list[Any], what: str) -> list[Any]:
        try:
            return convert(rows, target, rule=cfg.data.rule, seed=cfg.seed)
        except TypeError as exc:  # not a preference record at all
            raise DataError(f"{what}: {exc}; objective '{spec.name}' trains on {target}") from None
        except DataError as exc:  # e.g. unpaired labels for a pair objective (a reward model included)
            if exc.field is not None:
                raise
            source = cfg.data.path if what == "training data" else (cfg.data.eval_path or cfg.data.path)
            raise DataError(
                f"{what}: {exc.message}; algorithm '{cfg.algorithm}' trains on {target}",
                file=source,
                field="data.path" if source else "records",
            ) from None

    if schedule not in SAMPLED:  # online and iterative training data are only prompts
        records = as_target(records, "training data")
    if eval_records is not None:
        eval_records = as_target(eval_records, "eval data")
    return records, eval_records


def check_weights(records: list[Any], what: str, source: str | None, *, all_zero: bool = True) -> None:
    """Every row's ``weight`` is finite and in [0, 1e6] (rows given in Python skip the loader's checks), and
    (``all_zero``) not every weight is 0: such a dataset would train as a silent no-op."""
    from ..data.fields import BadRow, check_weight

    weights = []
    for i, record in enumerate(records):
        w = getattr(record, "weight", None)
        if w is None:
            continue
        try:
            weights.append(check_weight(float(w)))
        except (BadRow, TypeError, ValueError) as bad:
            raise DataError(f"{what}: {getattr(bad, 'message', bad)}", file=source, row=i, field="weight") from None
    if all_zero and weights and not any(weights):
        raise DataError(
            f"{what}: every row has weight 0, so training would not change the model", file=source, field="weight"
        )


def build_optimizer(model: torch.nn.Module, train: Any) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over the trainable parameters; no weight decay on biases and norms
    (parameters with fewer than two dimensions), as Hugging Face's Trainer does."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ConfigError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    kwargs = {"lr": train.lr, "betas": tuple(train.adam_betas), "eps": train.adam_eps}
    if fused_adamw_supported(decay + no_decay):
        # One kernel per parameter tensor instead of ~10 elementwise passes: the same update (to float
        # rounding), ~4x faster on CPU for a 135M-parameter model (bench/dpo_throughput.py).
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    return torch.optim.AdamW(groups, **kwargs)


def fused_adamw_supported(params: list[torch.nn.Parameter]) -> bool:
    """torch's fused AdamW handles floating-point parameters on CPU, CUDA, XPU and MPS, all on one device type."""
    devices = {p.device.type for p in params}
    return len(devices) == 1 and devices <= {"cpu", "cuda", "xpu", "mps"} and all(p.is_floating_point() for p in params)


def build_scheduler(optimizer: torch.optim.Optimizer, train: Any, total_steps: int) -> Any:
    """Linear warm-up then ``train.scheduler`` (transformers' schedules), stepped once per optimizer step."""
    from transformers import get_scheduler

    warmup = train.warmup_steps if train.warmup_steps is not None else round(train.warmup_ratio * total_steps)
    return get_scheduler(
        train.scheduler, optimizer, num_warmup_steps=min(warmup, total_steps), num_training_steps=total_steps
    )


_EXIT_HOOK: list[bool] = []


def destroy_gloo_group_at_exit(timeout_s: float = 60.0) -> None:
    """Register (once per process) an exit handler that tears down a gloo process group cleanly.

    A gloo group left to the interpreter's shutdown aborts the process now and then ("terminate called without
    an active exception", exit −6, after all its work is done: ~1 run in 7 of the two-process test here). The
    handler waits for every rank (``monitored_barrier``, so a rank that died costs ``timeout_s``, not the
    group's 30-minute timeout) and then destroys the group. Other backends are left alone.
    """
    if _EXIT_HOOK:
        return
    _EXIT_HOOK.append(True)
    import atexit
    from datetime import timedelta

    def _destroy() -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_backend() != "gloo":
            return
        try:
            dist.monitored_barrier(timeout=timedelta(seconds=timeout_s))
        except Exception:  # a rank is gone: leave the group to the shutdown rather than hang
            return
        dist.destroy_process_group()

    atexit.register(_destroy)


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
    algo, spec, params = resolve_objective(cfg)
    schedule_name = lm_schedule(algo)  # the table's data schedule picks the trainer's schedule
    mode, previous_iterate, anchored = run_reference(cfg, spec, params, schedule_name)
    judge_from_cfg = schedule_name in SAMPLED and judge is None
    if judge_from_cfg:
        from .judging import judge_from_config

        judge, task_prompts = judge_from_config(cfg)
        if records is None and cfg.data.path is None:
            records = task_prompts
    records, eval_records = load_records(cfg, spec, records, eval_records, schedule_name)
    # before the model changes (LoRA) and before anything is written to output_dir
    start = start_run(
        cfg,
        records,
        eval_records,
        model,
        judge if schedule_name in SAMPLED else None,
        is_main=acc.is_main_process,
        barrier=acc.wait_for_everyone,
        log=acc.print,
    )
    reward = algo.model == REWARD  # a reward model: the same loop, a scorer that reads rewards instead of log-probs
    policy, tok = load_policy(cfg, model, tokenizer, reward=reward, head=reward_head(algo, cfg))
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
    examples, stats = ([], None) if schedule_name in SAMPLED else tokenize_records(records, tk)
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
    if schedule_name == "rollout" and algo.objective == "ppo":  # PPO's critic: a value head on the shared trunk
        from ..models.value import ValueHead

        scorer.value_head = ValueHead(
            policy.config.hidden_size, params.value_head, params.num_bins, params.v_min, params.v_max
        )
    batch_kind = BATCH_KIND_OF_INPUTS[spec.inputs]
    optimizer = build_optimizer(scorer, train)
    scorer, optimizer = acc.prepare(scorer, optimizer)
    eval_bs = train.eval_batch_size or train.batch_size

    def batches(items: list[Any]) -> Iterator[ExampleBatch]:
        return eval_batches(
            items,
            batch_kind,
            eval_bs,
            layout=train.layout,
            pad_id=tok.pad_token_id,
            world_size=acc.num_processes,
            rank=acc.process_index,
            with_kl=with_kl,
        )

    round_reference = PreviousIterateReference() if previous_iterate else None
    ref_holder: dict[str, Reference] = {}  # the run's π_ref, for samplers built before it (Nash-MD, XPO)
    if schedule_name == "online":
        xpo = spec.inputs == "xpo_pair"
        schedule: Schedule = OnlineSchedule(
            prompts_of(records),
            policy_sampler(cfg, acc, scorer, tok),
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
            explore_fn=mixture_sampler(cfg, acc, scorer, tok, ref_holder, 1.0) if xpo else None,
        )
    elif schedule_name == "self_play":
        it = cfg.iterative
        game = {table.GEOMETRIC_MIXTURE: "nash_md", table.PROX_SNAPSHOTS: "nash_mp", table.NONE: "spo"}[algo.reference]
        snapshots = Snapshots(policy) if game == "nash_mp" else None
        score = policy_now(cfg, acc, base_scorer, policy, batches) if game == "nash_mp" else None
        schedule = SelfPlaySchedule(
            prompts_of(records),
            policy_sampler(cfg, acc, scorer, tok),
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
                mixture_sampler(cfg, acc, scorer, tok, ref_holder, it.mixture_coef) if game == "nash_md" else None
            ),
            snapshots=snapshots,
            score_fn=(lambda batch: score.sequences(batch)) if score is not None else None,
            seed=cfg.seed,
            layout=train.layout,
            world_size=acc.num_processes,
            rank=acc.process_index,
        )
    elif schedule_name == "iterative":
        it = cfg.iterative
        schedule = IterativeSchedule(
            prompts_of(records),
            policy_sampler(cfg, acc, scorer, tok),
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
            score_fn=policy_now(cfg, acc, base_scorer, policy, batches) if previous_iterate else None,
            seed=cfg.seed,
            layout=train.layout,
            world_size=acc.num_processes,
            rank=acc.process_index,
            gather=gather_objects(acc),
        )
    elif schedule_name == "rollout":
        from .rollout_setup import make_rollout_schedule

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
            batch_kind,
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
    reference = round_reference or reference_for_mode(mode, cfg, acc, base_scorer, policy, passes, reference_batches)
    if anchored:
        initial = reference_for_mode(mode, cfg, acc, base_scorer, policy, passes, reference_batches)
        reference = AnchoredReference(initial, round_reference)
    if schedule_name == "rollout":
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
        lr_scheduler=build_scheduler(optimizer.optimizer, train, total),
        schedule=schedule,
        reference=reference,
        total_steps=total,
        eval_batches=lambda: batches(eval_examples),
        has_eval=bool(eval_examples),
        tokenize_stats=stats,
        casts=casts,
        start=start,
    )
