"""The ``eval`` section of a run config: what to compare, on which prompts, under which judge."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..sections import Section


class EvalConfig(Section):
    """Evaluate a policy against a reference on held-out prompts (``preflab eval CONFIG.yaml``)."""

    name: str = Field("policy_vs_reference", description="Result name: written to RUN_DIR/eval/<name>.json.")
    policy: str | None = Field(
        None, description="Policy to evaluate (model name/dir); default: RUN_DIR/final, else model.name_or_path."
    )
    reference: str | None = Field(
        None, description="Policy to compare against; default: model.name_or_path (the initial policy)."
    )
    prompts: str | None = Field(
        None, description="Held-out prompts: a .jsonl (field 'prompt', optional 'family'/'group') or .txt file."
    )
    suite: str | None = Field(
        None, description="Task suite to draw held-out prompts from when no prompts file is given."
    )
    n_prompts: int = Field(
        200, ge=1, description="Number of held-out prompts (first n of the file, or drawn from the suite)."
    )
    judge: str = Field("gold", description="Registered judge name (preflab.feedback.JUDGES).")
    judge_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the judge.")
    both_orders: bool = Field(False, description="Judge every pair in both orders and average (cancels position bias).")
    max_new_tokens: int = Field(128, ge=1, description="Answer length cap when sampling.")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature of the answers (0 = greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling for the answers.")
    batch_size: int = Field(16, ge=1, description="Sequences per generate / scoring call.")
    bf16: bool = Field(True, description="bf16 autocast for sampling and scoring where the hardware supports it.")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="Confidence level of every interval.")
    n_bootstrap: int = Field(2000, ge=0, description="Bootstrap resamples for win rates and means.")
    length_control: bool = Field(True, description="Also report the length-controlled win rate (AlpacaEval LC).")
    lc_bootstrap: int = Field(200, ge=0, description="Bootstrap refits for the length-controlled win rate's CI.")
    length_unit: Literal["chars", "tokens"] = Field("chars", description="Length measure for length control.")
    null_check: bool = Field(True, description="Check that empty / long constant answers lose under the judge.")
    null_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Highest null-answer win rate of a reliable judge.")
    kl: bool = Field(True, description="Estimate KL(policy ‖ reference) from temperature-1 samples of the policy.")
    kl_samples_per_prompt: int = Field(1, ge=1, description="Policy samples per prompt for the KL estimate.")
    pairs: str | None = Field(
        None, description="Held-out preference pairs for ranking accuracy (any format the data layer reads)."
    )
    beta: float = Field(0.1, gt=0.0, description="β of the implicit reward β·log(π/π_ref) for ranking accuracy.")
    keep_samples: bool = Field(
        True, description="Store every prompt, both answers and the verdicts in the result file."
    )

    @field_validator("name")
    @classmethod
    def _one_file_name(cls, name: str) -> str:
        from ..files import name_problem

        problem = name_problem(name)
        if problem:
            raise ValueError(problem)
        return name

    @field_validator("judge")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ..feedback.judges import judge_name

        return judge_name(name)
