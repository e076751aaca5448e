"""The ``quickstart:`` section: what the end-to-end alignment job samples, annotates and evaluates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..sections import Section


class QuickstartSection(Section):
    """Prompts, sampling, annotation and evaluation of ``preflab quickstart`` (training uses train/objective/lora)."""

    suite: str = Field("default", description="Task suite the prompts are drawn from (preflab.feedback.SUITES).")
    train_prompts: int = Field(256, ge=1, description="Training prompts (disjoint from the held-out ones).")
    eval_prompts: int = Field(200, ge=1, description="Held-out prompts for the evaluation.")
    samples_per_prompt: int = Field(4, ge=2, description="Completions sampled per training prompt.")
    max_new_tokens: int = Field(96, ge=1, description="Tokens per sampled completion (training and evaluation).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature of the training completions.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus mass of the training completions.")
    sample_batch_size: int = Field(
        32,
        ge=1,
        description="Sequences decoded at once (the rollout engine's rows; prompts per call for generate = this // n).",
    )
    rounds: int = Field(
        1, ge=1, description="On-policy rounds: round r samples its share of the prompts from round r-1's policy."
    )
    pool: str = Field("noisy", description="Annotator pool (a preset name or a YAML file): it labels the pairs.")
    pair_strategy: Literal["random", "all", "best-vs-worst", "best-vs-random", "all-pairs", "adjacent"] = Field(
        "best-vs-worst",
        description="How annotators make pairs: a vote on random or all pairs, or a ranking rule that picks pairs.",
    )
    pairs_per_prompt: int | None = Field(
        None,
        ge=1,
        description="Pairs made per prompt by random and best-vs-worst; null = 6 for random, 1 for best-vs-worst.",
    )
    eval_temperature: float = Field(0.0, ge=0, description="Evaluation sampling temperature (0 = greedy).")
    kl_samples_per_prompt: int = Field(1, ge=1, description="Temperature-1 samples per held-out prompt for KL.")
    n_bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples for the confidence intervals.")

    def pairs_k(self) -> int:
        """``pairs_per_prompt`` with its per-strategy default."""
        if self.pairs_per_prompt is not None:
            return self.pairs_per_prompt
        return 6 if self.pair_strategy == "random" else 1
