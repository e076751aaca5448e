"""LLM-as-a-judge with a local causal LM: "which response is better, A or B?".

The judge reads the next-token logits after the chat template's assistant prompt and compares only the
two answer tokens: P(first ≻ second) = softmax(z_A, z_B)_A = σ(z_A − z_B) (the logit comparison of
AlpacaEval's / Zheng et al. 2023's pairwise judges without sampling). LLM judges favour a position
(Zheng et al. 2023, "Judging LLM-as-a-Judge", Sec. 3.3; Wang et al. 2023, "Large Language Models are
not Fair Evaluators"), so each pair is asked in both orders and the answers averaged:

    P(a ≻ b) = ½ [ P_A(a shown first) + 1 − P_A(b shown first) ]

which cancels any constant position bias and makes P(a ≻ b) + P(b ≻ a) = 1 exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...errors import ConfigError
from ..judge import Judge
from .common import encode, prompt_text, render, sigmoid
from .registry import register_judge

JUDGE_TEMPLATE = (
    "Which response follows the instruction better?\n\n"
    "Instruction:\n{prompt}\n\n"
    "Response A:\n{a}\n\n"
    "Response B:\n{b}\n\n"
    "Answer with a single letter: A or B."
)


@register_judge("llm")
class LLMJudge(Judge):
    """A causal LM asked "A or B"; both orders averaged unless ``both_orders=False``."""

    name = "llm"

    @classmethod
    def from_config(
        cls, *, tasks: Sequence[Any] = (), model: str | None = None, trust_remote_code: bool = False, **kwargs: Any
    ) -> LLMJudge:
        """The causal LM ``model`` (default: the embedded SmolLM2) as the judge."""
        from ...models import DEFAULT_MODEL, load_model, load_tokenizer

        path = model or DEFAULT_MODEL
        return cls(
            load_model(path, trust_remote_code=trust_remote_code),
            load_tokenizer(path, trust_remote_code=trust_remote_code),
            **kwargs,
        )

    def __init__(
        self,
        model,
        tokenizer,
        *,
        template: str = JUDGE_TEMPLATE,
        labels: tuple[str, str] = ("A", "B"),
        both_orders: bool = True,
        batch_size: int = 8,
        max_length: int | None = 4096,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.template, self.both_orders = template, both_orders
        self.batch_size, self.max_length = batch_size, max_length
        self.label_ids = [self._single_token(lab) for lab in labels]

    def _single_token(self, label: str) -> int:
        ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ConfigError(
                f"judge label {label!r} is {len(ids)} tokens for this tokenizer; it must be one", field="judge.labels"
            )
        return int(ids[0])

    def label_logit_gaps(self, prompts: list, firsts: list, seconds: list) -> list[float]:
        """z_A − z_B for each query (a positive gap prefers the response shown first)."""
        import torch

        from ...generation.decode import last_logits
        from ...generation.sampler import bf16_autocast_ok

        texts = [
            render(
                self.tokenizer,
                [{"role": "user", "content": self.template.format(prompt=prompt_text(p), a=x, b=y)}],
                generation_prompt=True,
            )
            for p, x, y in zip(prompts, firsts, seconds, strict=True)
        ]
        gaps: list[float] = []
        a_id, b_id = self.label_ids
        for s in range(0, len(texts), self.batch_size):
            enc = encode(
                self.tokenizer,
                texts[s : s + self.batch_size],
                self.model.device,
                side="left",
                max_length=self.max_length,
            )
            pos = (enc["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
            with (
                torch.no_grad(),
                torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=bf16_autocast_ok(self.model)),
            ):
                last = last_logits(self.model, enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=pos)
                last = last.float()
            gaps.extend((last[:, a_id] - last[:, b_id]).tolist())
        return gaps

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        p_first = [sigmoid(g) for g in self.label_logit_gaps(prompts, a, b)]
        if not self.both_orders:
            return p_first
        p_swapped = [sigmoid(g) for g in self.label_logit_gaps(prompts, b, a)]
        return [0.5 * (x + 1.0 - y) for x, y in zip(p_first, p_swapped, strict=True)]

    def compare(self, prompt, a, b) -> float:
        return self.compare_batch([prompt], [a], [b])[0]
