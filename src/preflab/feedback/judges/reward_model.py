"""Reward-model judges: a scalar r(x, y) per response; P(a ≻ b) = σ(r_a − r_b) (Bradley–Terry).

:class:`RewardModelJudge` runs any Hugging Face sequence-classification model (the format TRL's
``RewardTrainer`` writes) on the chat-templated conversation; the reward is the logit of ``label_index``
at the model's pooled position (the last non-padding token, the model's own convention, so scores match
how the model was trained). :class:`RewardFnJudge` wraps any batched scoring function (e.g. preflab's
own reward heads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...errors import ConfigError
from ..judge import Judge
from .common import conversation, encode, render, sigmoid
from .registry import register_judge


@register_judge("reward_model")
class RewardModelJudge(Judge):
    """A sequence-classification reward model behind the Judge interface."""

    name = "reward_model"

    @classmethod
    def from_config(cls, *, tasks: Sequence[Any] = (), model: str | None = None, trust_remote_code: bool = False,
                    **kwargs: Any) -> RewardModelJudge:
        """The reward-model checkpoint ``model`` (see :meth:`from_pretrained`)."""
        if not model:
            raise ConfigError("the reward_model judge needs model=<checkpoint>", field="judge_args.model")
        return cls.from_pretrained(model, trust_remote_code=trust_remote_code, **kwargs)

    def __init__(self, model, tokenizer, *, batch_size: int = 8, max_length: int | None = 2048,
                 label_index: int = 0) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.label_index = label_index
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id  # batched pooling needs it

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, trust_remote_code: bool = False, **kwargs) -> RewardModelJudge:
        """Load with :func:`preflab.models.load_model` as ``AutoModelForSequenceClassification``."""
        from transformers import AutoModelForSequenceClassification

        from ...models import load_model, load_tokenizer

        tok = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        model = load_model(name_or_path, trust_remote_code=trust_remote_code,
                           model_class=AutoModelForSequenceClassification)
        judge = cls(model, tok, **kwargs)
        judge.name = f"rm:{name_or_path}"
        return judge

    def score_batch(self, prompts: list, responses: list) -> list[float]:
        import torch

        from ...generation.sampler import bf16_autocast_ok

        texts = [render(self.tokenizer, conversation(p, r), generation_prompt=False)
                 for p, r in zip(prompts, responses, strict=True)]
        out: list[float] = []
        for s in range(0, len(texts), self.batch_size):
            enc = encode(self.tokenizer, texts[s:s + self.batch_size], self.model.device, side="right",
                         max_length=self.max_length)
            with torch.no_grad(), torch.autocast(self.model.device.type, dtype=torch.bfloat16,
                                                 enabled=bf16_autocast_ok(self.model)):
                logits = self.model(**enc).logits
            out.extend(logits[:, self.label_index].float().tolist())
        return out

    def score(self, prompt, response) -> float:
        return self.score_batch([prompt], [response])[0]

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        ra = self.score_batch(prompts, a)
        rb = self.score_batch(prompts, b)
        return [sigmoid(x - y) for x, y in zip(ra, rb, strict=True)]

    def compare(self, prompt, a, b) -> float:
        return self.compare_batch([prompt], [a], [b])[0]


class RewardFnJudge(Judge):
    """Any ``score_fn(prompts, responses) -> list[float]`` as a Bradley–Terry judge."""

    def __init__(self, score_fn: Callable[[list, list], list[float]], name: str = "reward_fn") -> None:
        self.score_fn = score_fn
        self.name = name

    def score_batch(self, prompts: list, responses: list) -> list[float]:
        return [float(x) for x in self.score_fn(list(prompts), list(responses))]

    def score(self, prompt, response) -> float:
        return self.score_batch([prompt], [response])[0]

    def compare(self, prompt, a, b) -> float:
        ra, rb = self.score_batch([prompt, prompt], [a, b])
        return sigmoid(ra - rb)
