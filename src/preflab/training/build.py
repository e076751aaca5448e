"""Construct a run's parts from its config: accelerator, policy (+ LoRA), records, tokenised data, schedule,
reference, optimizer and learning-rate schedule, gathered in :class:`Parts` by :func:`build_parts`.

What the config means (the objective, precision, the reference mode, the data kind) is decided in
:mod:`preflab.training.resolve`; the loop (:mod:`preflab.training.loop`) only wires the parts together. The records
come from :mod:`.run_data`, the schedule from :mod:`.schedule_setup`, the reference from :mod:`.references`, the
optimizer and learning-rate schedule from :mod:`.optim`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..algorithms import REWARD
from ..data.collate import ExampleBatch
from ..data.tokenize import TokenizeOptions, Tokenizer, TokenizeStats, tokenize_records
from ..errors import ConfigError
from ..models.casts import FrozenCasts
from ..models.compile import compile_blocks
from ..models.logprobs import SequenceScorer
from ..models.policy import Reference
from ..models.reward import RewardScorer
from ..objectives import ObjectiveSpec
from .iterative import AnchoredReference, IterativeSchedule, PreviousIterateReference
from .lm_algorithms import SAMPLED, lm_schedule, reward_head
from .optim import build_optimizer, build_scheduler
from .references import reference_for_mode
from .resolve import check_trackers, resolve_objective, run_reference, use_bf16
from .run_data import annotator_ids, load_records
from .rundir import RunStart, start_run
from .schedule import OfflineSchedule, Schedule, eval_batches
from .schedule_setup import ScheduleInputs, build_schedule
from .selfplay import SelfPlaySchedule
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
        from ..models.embedded import cache_dir

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
    built: list[Reference] = []  # the reference is built below; a rollout schedule's first rollout comes later
    schedule = build_schedule(
        ScheduleInputs(
            name=schedule_name,
            cfg=cfg,
            acc=acc,
            algo=algo,
            spec=spec,
            params=params,
            batch_kind=batch_kind,
            with_kl=with_kl,
            judge_from_cfg=judge_from_cfg,
            scorer=scorer,
            base_scorer=base_scorer,
            policy=policy,
            tok=tok,
            tk=tk,
            judge=judge,
            records=records,
            examples=examples,
            batches=batches,
            round_reference=round_reference,
            ref_holder=ref_holder,
            reference=lambda: built[0],
        )
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
