"""Building a run's parts from its config: precision, policy (+ LoRA), data, schedule kind, reference mode,
optimizer and learning-rate schedule. The loop (:mod:`preflab.training.loop`) only wires them together."""

from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError, DataError
from ..objectives import ObjectiveSpec
from .lm_algorithms import SAMPLED

KIND_OF_INPUTS = {
    "pair": "pairs",
    "unpaired": "unpaired",
    "iterative_pair": "pairs",
    "reward_pair": "pairs",
    "samples": "pairs",
    "xpo_pair": "pairs",
    "ranking": "rankings",
    "rollout": "prompts",
    "preference_embedding": "pairs",
    "group_pairs": "pairs",
}


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off: a CUDA GPU with bf16, or a CPU with AVX512-BF16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(cpu, name, lambda: False)() for name in checks)
    return False


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting == "auto":
        return bf16_supported(device)
    return bool(setting)


TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_trackers(names: list[str]) -> None:
    """Every requested tracker's package is installed (else a ConfigError saying what to install)."""
    import importlib.util

    for name in names:
        if not any(importlib.util.find_spec(pkg) for pkg in TRACKER_PACKAGES[name]):
            raise ConfigError(
                f"tracker '{name}' needs the package '{TRACKER_PACKAGES[name][0]}' "
                f"(pip install {TRACKER_PACKAGES[name][0]})",
                field="train.report_to",
            )


def reference_mode(setting: str, spec: ObjectiveSpec, lora: bool, schedule: str) -> str:
    """Resolve ``reference.mode`` (see :mod:`preflab.models.policy`)."""
    if not spec.needs_ref:
        return "none"
    mode = setting
    if mode == "auto":
        mode = "adapters_disabled" if lora else "frozen_copy"
    if mode == "none":
        raise ConfigError(f"objective '{spec.name}' needs a reference policy", field="reference.mode")
    if mode == "adapters_disabled" and not lora:
        raise ConfigError(
            "adapters_disabled needs lora.enabled: true (full fine-tuning has no adapters)", field="reference.mode"
        )
    if mode == "cached" and schedule in SAMPLED:
        raise ConfigError(
            f"an {schedule} schedule samples new completions as it trains; their reference log-probs "
            "cannot be cached in advance (use adapters_disabled or frozen_copy)",
            field="reference.mode",
        )
    return mode


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
    return model, tokenizer


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
    target = KIND_OF_INPUTS[spec.inputs]

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
