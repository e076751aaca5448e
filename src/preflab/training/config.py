"""Config sections of a training run: ``train:``, ``objective:``, ``lora:``, ``reference:``, ``online:``.

The run's top-level ``algorithm:`` picks a row of the algorithm table (:mod:`preflab.algorithms`);
``objective.params`` is checked against that algorithm's objective's parameter dataclass when the config is
loaded (:func:`preflab.training.lm_algorithms.resolve_algorithm`), so ``algorithm: dpo`` with
``objective: {params: {bta: 0.1}}`` fails at once with "unknown parameter 'bta' of objective 'dpo'; did you
mean 'beta'?" and the file's line number.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from ..errors import PreflabError
from ..sections import Section

SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
TRACKERS = ("tensorboard", "wandb", "mlflow")


class TrainConfig(Section):
    """The optimisation loop: batch shape, optimiser, schedule, precision, evaluation, checkpoints."""

    lr: float = Field(5e-6, gt=0, description="Peak learning rate of AdamW.")
    batch_size: int = Field(8, ge=1, description="Examples (pairs / completions / prompts) per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    max_steps: int | None = Field(None, ge=1, description="Optimizer steps; overrides epochs when set.")
    epochs: float = Field(1.0, gt=0, description="Passes over the dataset (offline) when max_steps is unset.")
    warmup_steps: int | None = Field(None, ge=0, description="Linear warm-up steps; overrides warmup_ratio.")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="Warm-up as a fraction of the total steps.")
    scheduler: Literal[SCHEDULERS] = Field(
        "linear", description="Learning-rate schedule after warm-up (transformers names)."
    )  # type: ignore[valid-type]
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (not applied to biases and norms).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (β1, β2).")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW ε.")
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm to this; null = no clipping."
    )
    bf16: bool | Literal["auto"] = Field(
        "auto", description="bf16 autocast with fp32 master weights; auto = where the hardware has bf16."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    compile: bool = Field(
        False,
        description="Compile each decoder block with torch.compile (regional compilation).",
    )
    compile_memory_budget: float = Field(
        0.8,
        gt=0,
        le=1,
        description="With compile: the share of saved activations the backward keeps (below 1 recomputes cheap ops).",
    )
    max_length: int = Field(1024, ge=2, description="Max tokens of prompt + completion.")
    max_prompt_length: int | None = Field(
        None, ge=1, description="Max prompt tokens (keep_end cuts to this); null = max_length // 2 when cutting."
    )
    truncation: Literal["keep_end", "skip", "error"] = Field(
        "keep_end", description="Rows longer than max_length: cut (prompt's end kept), skip (counted), or error."
    )
    chat_template: bool | None = Field(
        None, description="Render through the tokenizer's chat template; null = when it has one."
    )
    layout: Literal["padded", "packed", "prefix_shared"] = Field(
        "padded", description="Batch layout: padded rows, padding-free packing, or one shared prompt per pair."
    )
    chunked_lm_head: bool | Literal["auto"] = Field(
        "auto", description="Apply the lm-head in chunks only where completion tokens are (no full logits)."
    )
    logprob_chunk_size: int = Field(1024, ge=1, description="Rows per chunk of the lm-head / logsumexp.")
    eval_every: int = Field(
        0, ge=0, description="Evaluate every N optimizer steps (0 = only at the end, when there is eval data)."
    )
    eval_batch_size: int | None = Field(None, ge=1, description="Eval micro-batch size; null = batch_size.")
    log_every: int = Field(1, ge=1, description="Write train metrics every N optimizer steps.")
    save_every: int = Field(
        0, ge=0, description="Checkpoint every N optimizer steps (0 = never, the final model is always saved)."
    )
    keep_last: int = Field(2, ge=1, description="Checkpoints kept on disk (older ones are deleted).")
    resume: bool | Literal["fork", "auto"] = Field(
        False,
        description="Continue the run in output_dir (true), fork a new run from it, or pick by provenance (auto).",
    )
    save_final: bool = Field(True, description="Save the final model as a Hugging Face directory output_dir/final.")
    merge_lora: bool = Field(
        False,
        description="LoRA: final/ holds the adapter (false) or the merged model in the base's dtype (true).",
    )
    progress: bool = Field(True, description="Show a rich progress bar.")
    report_to: list[Literal[TRACKERS]] = Field(
        default_factory=list, description="Extra trackers through Accelerate: tensorboard, wandb, mlflow."
    )  # type: ignore[valid-type]
    project_name: str = Field("preflab", description="Tracker project / experiment name.")


class ObjectiveConfig(Section):
    """The algorithm's objective: its parameters, and (in old configs) the algorithm's name."""

    name: str | None = Field(
        None,
        description="Without algorithm: selects the algorithm of this name; resolved to the algorithm's objective.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="The objective's parameters (its params dataclass), over the algorithm's defaults.",
    )

    @field_validator("name")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        from ..objectives import get_objective

        if name is None:
            return name
        try:
            get_objective(name)
        except PreflabError as err:
            raise ValueError(err.message) from None
        return name


def make_params(name: str, params: dict[str, Any]) -> Any:
    """Build objective ``name``'s params dataclass from ``params``; a ValueError says what is wrong."""
    from ..objectives import get_objective

    spec = get_objective(name)
    cls = spec.params
    valid = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(
                f"unknown parameter '{key}' of objective '{name}'{hint} (valid: {', '.join(valid) or 'none'})"
            )
    try:
        return TypeAdapter(cls).validate_python(params)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"objective '{name}' parameter '{where}': {first['msg']}") from None
    except PreflabError as err:  # the dataclass's own __post_init__ checks
        raise ValueError(f"objective '{name}' parameter '{err.field or '?'}': {err.message}") from None


class LoraSection(Section):
    """LoRA adapters (peft). Off = full fine-tuning."""

    enabled: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: float = Field(32.0, gt=0, description="Scaling α (the update is α/r · BA).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or names."
    )
    modules_to_save: list[str] | None = Field(
        None, description="Extra modules trained in full and saved (e.g. lm_head)."
    )


class ReferenceSection(Section):
    """The reference policy π_ref."""

    mode: Literal["auto", "adapters_disabled", "frozen_copy", "cached", "none"] = Field(
        "auto", description="auto = none for reference-free objectives, adapters_disabled with LoRA, else frozen_copy."
    )


class OnlineSection(Section):
    """Online schedule: sample two completions per prompt from the current policy, judge, train on the pair."""

    max_new_tokens: int = Field(64, ge=1, description="Tokens sampled per completion.")
    temperature: float = Field(
        0.9, gt=0, description="Sampling temperature (must be > 0: two different samples are needed)."
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    soft_labels: bool = Field(
        False, description="Train on the judge's probability as a soft label instead of a hard one."
    )
    judge: str = Field(
        "gold",
        description="Registered judge used when train() is given none (preflab.feedback.JUDGES; gold = task scorers).",
    )
    judge_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the judge (e.g. model: PATH, temperature: 0.5, pool: noisy).",
    )
    tasks: str = Field(
        "default",
        description="Task suite (or family) whose prompts are trained on when there is no data.",
    )
    num_prompts: int = Field(64, ge=1, description="Tasks drawn from the suite.")
    samples_per_prompt: int = Field(
        2,
        ge=2,
        description="Completions sampled per prompt by online pair algorithms (above 2: see online.pairs).",
    )
    pairs: Literal["best_worst", "all"] = Field(
        "best_worst",
        description="With samples_per_prompt > 2: the highest vs lowest estimated win rate, or every pair of samples.",
    )

    @field_validator("judge")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ..feedback.judges import judge_name

        return judge_name(name)


class IterativeSection(Section):
    """Iterative schedules (iterative DPO, SPPO, INPO, DNO): rounds of sample K per prompt from π_t → judge →
    train; and the self-play policy-gradient schedules (Nash-MD, Nash-MP, SPO), which sample K per prompt at
    every step and use rounds for their prompts (and Nash-MP for its mirror-prox iterations).

    Sampling (max_new_tokens, temperature, top_p), the judge and the prompts come from ``online:``."""

    rounds: int = Field(
        3, ge=1, description="Rounds; round t samples from and (by default) is regularised towards π_t."
    )
    samples_per_prompt: int = Field(
        4, ge=2, description="Completions K sampled per prompt and round; every pair of them is judged."
    )
    prompts_per_round: int | None = Field(
        None, ge=1, description="Prompts of each round, taken in turn from the shuffled prompts; null = all of them."
    )
    steps_per_round: int | None = Field(
        None, ge=1, description="Optimizer steps per round; null = one pass over the round's pairs."
    )
    pairs: Literal["best_worst", "all"] = Field(
        "best_worst",
        description="Pairs per prompt: highest vs lowest estimated win rate, or every pair of distinct samples.",
    )
    reference: Literal["previous_iterate", "initial"] = Field(
        "previous_iterate",
        description="π_t of the round, or the initial policy π_0 (iterative_dpo with an objective that takes one).",
    )
    mixture_coef: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Nash-MD: weight m of π_ref in the opponent mixture π^{1−m} π_ref^{m} (0 = the policy, 1 = π_ref).",
    )


class RolloutSection(Section):
    """Policy-gradient schedules (PPO, RLOO, REINFORCE++, ReMax, GRPO): G completions per prompt from the current
    policy, rewards from online.judge, then epochs of minibatch steps. Sampling and prompts come from ``online:``."""

    group_size: int = Field(4, ge=1, description="Completions G sampled per prompt (RLOO and GRPO need at least 2).")
    prompts_per_rollout: int = Field(
        4,
        ge=1,
        description="Prompts per rollout batch; the rollout holds prompts_per_rollout × group_size completions.",
    )
    epochs: int = Field(
        1,
        ge=1,
        description="Passes over each rollout batch (PPO epochs), in minibatches of batch_size × grad_accum.",
    )
    reward: Literal["score", "win_rate"] = Field(
        "score",
        description="A completion's reward: the judge's score, or its win rate against the prompt's other samples.",
    )
    reward_norm: Literal["none", "batch", "running"] = Field(
        "none", description="Normalise scores before the estimator: over the rollout batch, or by running mean and std."
    )
    truncated: Literal["keep", "mask", "penalize"] = Field(
        "keep",
        description="Completions cut by max_new_tokens: trained as they are, left out of the loss, or penalised.",
    )
    truncated_penalty: float = Field(
        1.0, ge=0, description="With truncated: penalize, subtracted from a cut completion's score."
    )
    gold: bool = Field(True, description="Also log the task suite's gold reward when the judge is not the gold one.")


class RewardSection(Section):
    """``reward:`` — the head of a reward model (algorithms that train one: bt_reward, gpm, maxmin_em)."""

    head: Literal["scalar", "hl_gauss", "gpm", "mixture"] | None = Field(
        None,
        description="Reward head (preflab.models.reward_heads); null = the algorithm's own.",
    )
    num_bins: int = Field(51, ge=2, description="hl_gauss: bins of the categorical head.")
    v_min: float = Field(-10.0, description="hl_gauss: lowest reward the bins cover.")
    v_max: float = Field(10.0, description="hl_gauss: highest reward the bins cover.")
    sigma_ratio: float = Field(0.75, gt=0, description="hl_gauss: σ of the Gaussian target / bin width.")
    dim: int = Field(8, ge=2, description="gpm: size 2k of the preference embedding (even).")
    groups: int = Field(2, ge=1, description="mixture: number K of annotator groups (Bradley–Terry heads).")
