"""Pairwise preference-model judge: a model that reads (x, y_a, y_b) and outputs P(y_a ≻ y_b) directly.

Unlike a reward model it can express intransitive preferences (PairRM, Jiang et al. 2023; general
preference models, Zhang et al. 2024). A sequence-classification model with one logit reads both
responses in one text (``template``); because such models are sensitive to the order, the judge by
default averages both orders: P(a ≻ b) = ½ [σ(f(x, a, b)) + 1 − σ(f(x, b, a))], so that
P(a ≻ b) + P(b ≻ a) = 1 exactly. ``prob_fn`` plugs in any other batched pairwise model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...errors import ConfigError
from ..judge import Judge
from .common import encode, prompt_text, render
from .registry import register_judge

PAIR_TEMPLATE = "Instruction:\n{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}"


@register_judge("preference_model")
class PreferenceModelJudge(Judge):
    """P(a ≻ b) from a pairwise model: σ(logit) of a one-label classifier, or ``prob_fn``."""

    name = "preference_model"

    @classmethod
    def from_config(
        cls, *, tasks: Sequence[Any] = (), model: str | None = None, trust_remote_code: bool = False, **kwargs: Any
    ) -> PreferenceModelJudge:
        """The one-logit sequence-classification checkpoint ``model``."""
        from transformers import AutoModelForSequenceClassification

        from ...models import load_model, load_tokenizer

        if not model:
            raise ConfigError("the preference_model judge needs model=<checkpoint>", field="judge_args.model")
        loaded = load_model(model, trust_remote_code=trust_remote_code, model_class=AutoModelForSequenceClassification)
        return cls(loaded, load_tokenizer(model, trust_remote_code=trust_remote_code), **kwargs)

    def __init__(
        self,
        model=None,
        tokenizer=None,
        *,
        prob_fn: Callable[[list, list, list], list[float]] | None = None,
        template: str = PAIR_TEMPLATE,
        symmetric: bool = True,
        batch_size: int = 8,
        max_length: int | None = 2048,
    ) -> None:
        if prob_fn is None and (model is None or tokenizer is None):
            raise ValueError("PreferenceModelJudge needs a model and tokenizer, or prob_fn")
        self.model, self.tokenizer, self.prob_fn = model, tokenizer, prob_fn
        self.template, self.symmetric = template, symmetric
        self.batch_size, self.max_length = batch_size, max_length
        if model is not None and getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    def first_probs(self, prompts: list, firsts: list, seconds: list) -> list[float]:
        """P(first ≻ second) as the model sees it, one query per row, in the given order."""
        if self.prob_fn is not None:
            return [float(p) for p in self.prob_fn(list(prompts), list(firsts), list(seconds))]
        import torch

        from ...generation.sampler import bf16_autocast_ok

        texts = [
            render(
                self.tokenizer,
                [{"role": "user", "content": self.template.format(prompt=prompt_text(p), a=x, b=y)}],
                generation_prompt=False,
            )
            for p, x, y in zip(prompts, firsts, seconds, strict=True)
        ]
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            enc = encode(
                self.tokenizer,
                texts[s : s + self.batch_size],
                self.model.device,
                side="right",
                max_length=self.max_length,
            )
            with (
                torch.no_grad(),
                torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=bf16_autocast_ok(self.model)),
            ):
                logits = self.model(**enc).logits
            out.extend(torch.sigmoid(logits[:, 0].float()).tolist())
        return out

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        p_ab = self.first_probs(prompts, a, b)
        if not self.symmetric:
            return p_ab
        p_ba = self.first_probs(prompts, b, a)
        return [0.5 * (x + 1.0 - y) for x, y in zip(p_ab, p_ba, strict=True)]

    def compare(self, prompt, a, b) -> float:
        return self.compare_batch([prompt], [a], [b])[0]
