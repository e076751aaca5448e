"""Reward-model judges: a scalar r(x, y) per response; P(a ≻ b) = σ(r_a − r_b) (Bradley–Terry 1952).

:class:`RewardModelJudge` runs any Hugging Face sequence-classification model (the format TRL's
``RewardTrainer`` and ``preflab train`` with ``algorithm: bt_reward`` write); the reward is the logit of
``label_index`` at the model's pooled position (the last non-padding token, the model's own convention). The ids it
reads are those the model was trained on: a model trained by preflab records its tokenisation in its config
(``preflab_reward``), and the judge tokenises prompt and response exactly as the trainer did; any other model reads
the chat-templated conversation, as TRL tokenises it. :class:`RewardEnsembleJudge` averages several reward models
and reports their disagreement (the standard deviation) as uncertainty (Coste et al. 2024, "Reward Model Ensembles
Help Mitigate Overoptimization"). :class:`RewardFnJudge` wraps any batched scoring function.
"""

from __future__ import annotations

import math
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
    reads_embeddings = False  # GPMJudge: the outputs are preference embeddings, not rewards

    @classmethod
    def from_config(
        cls,
        *,
        tasks: Sequence[Any] = (),
        model: str | list[str] | None = None,
        trust_remote_code: bool = False,
        penalty: float = 0.0,
        **kwargs: Any,
    ) -> Judge:
        """The reward-model checkpoint ``model`` (see :meth:`from_pretrained`); a list of checkpoints is an
        ensemble (:class:`RewardEnsembleJudge`), whose reward is mean − ``penalty`` · std of its members'."""
        if not model:
            raise ConfigError(
                "the reward_model judge needs model=<checkpoint> (or a list of checkpoints)", field="judge_args.model"
            )
        if isinstance(model, (list, tuple)):
            return RewardEnsembleJudge(
                [cls.from_pretrained(str(m), trust_remote_code=trust_remote_code, **kwargs) for m in model],
                penalty=penalty,
            )
        if penalty:
            raise ConfigError(
                "an ensemble penalty needs a list of reward models (judge_args.model: [dir1, dir2, ...])",
                field="judge_args.penalty",
            )
        return cls.from_pretrained(model, trust_remote_code=trust_remote_code, **kwargs)

    def __init__(
        self, model, tokenizer, *, batch_size: int = 8, max_length: int | None = 2048, label_index: int = 0
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.label_index = label_index
        if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
            model.config.pad_token_id = tokenizer.pad_token_id  # batched pooling needs it
        self._ids = _trained_tokenization(model, tokenizer)
        from ...models.reward_heads import head_of_model

        self.head = head_of_model(model)
        if (self.head.name == "gpm") != self.reads_embeddings:
            if self.reads_embeddings:
                raise ConfigError(
                    f"this model has a '{self.head.name}' reward head, not preference embeddings; use "
                    "judge: reward_model",
                    field="judge_args.model",
                )
            raise ConfigError(
                "this model is a general preference model (preference embeddings, no scalar reward); use judge: gpm",
                field="judge_args.model",
            )
        labels = int(getattr(model.config, "num_labels", 1))
        if not 0 <= label_index < labels or self.head.name == "hl_gauss" and label_index:
            raise ConfigError(
                f"label_index {label_index} is not a reward of this model ({labels} outputs, '{self.head.name}' head)",
                field="judge_args.label_index",
            )

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, trust_remote_code: bool = False, **kwargs) -> RewardModelJudge:
        """Load with :func:`preflab.models.load_model` as ``AutoModelForSequenceClassification``."""
        from transformers import AutoModelForSequenceClassification

        from ...models import load_model, load_tokenizer
        from ...models.reward import check_reward_checkpoint, check_tokenizer

        check_reward_checkpoint(name_or_path, trust_remote_code=trust_remote_code)
        tok = load_tokenizer(name_or_path, trust_remote_code=trust_remote_code)
        model = load_model(
            name_or_path, trust_remote_code=trust_remote_code, model_class=AutoModelForSequenceClassification
        )
        check_tokenizer(model, tok, name_or_path)
        judge = cls(model, tok, **kwargs)
        judge.name = f"{'gpm' if cls.reads_embeddings else 'rm'}:{name_or_path}"
        return judge

    def score_batch(self, prompts: list, responses: list) -> list[float]:
        """r(x, y) per response: the logit of ``label_index`` (for a mixture, group ``label_index``'s reward), or
        the expected bin centre of an ``hl_gauss`` head."""
        out = self.outputs_batch(prompts, responses)
        if self.head.name == "hl_gauss":
            return self.head.output(out).tolist()
        return out[:, self.label_index].tolist()

    def outputs_batch(self, prompts: list, responses: list) -> Any:
        """(N, num_labels) float32 outputs of the classifier at each response's last token."""
        import torch

        from ...generation.sampler import bf16_autocast_ok

        pairs = list(zip(prompts, responses, strict=True))
        out: list[Any] = []
        for s in range(0, len(pairs), self.batch_size):
            chunk = pairs[s : s + self.batch_size]
            if self._ids is not None:
                enc = _pad_right([self._ids(p, r) for p, r in chunk], self.model.config.pad_token_id, self.model.device)
            else:
                texts = [render(self.tokenizer, conversation(p, r), generation_prompt=False) for p, r in chunk]
                enc = encode(self.tokenizer, texts, self.model.device, side="right", max_length=self.max_length)
            with (
                torch.no_grad(),
                torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=bf16_autocast_ok(self.model)),
            ):
                logits = self.model(**enc).logits
            out.append(logits.float().cpu())
        return torch.cat(out) if out else torch.zeros(0, int(getattr(self.model.config, "num_labels", 1)))

    def score(self, prompt, response) -> float:
        return self.score_batch([prompt], [response])[0]

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        ra = self.score_batch(prompts, a)
        rb = self.score_batch(prompts, b)
        return [sigmoid(x - y) for x, y in zip(ra, rb, strict=True)]

    def compare(self, prompt, a, b) -> float:
        return self.compare_batch([prompt], [a], [b])[0]


def _trained_tokenization(model: Any, tokenizer: Any) -> Callable[[Any, Any], list[int]] | None:
    """For a reward model trained by preflab: ``ids(prompt, response)`` exactly as its trainer tokenised a row
    (prompt ids + completion ids, with its truncation); None for any other model."""
    from ...data.tokenize import TokenizeOptions, Tokenizer
    from ...models.reward import REWARD_CONFIG_KEY

    info = getattr(model.config, REWARD_CONFIG_KEY, None)
    if not isinstance(info, dict) or info.get("tokenization") != "preflab":
        return None
    tk = Tokenizer(
        tokenizer,
        TokenizeOptions(
            max_length=int(info.get("max_length") or 1024),
            max_prompt_length=info.get("max_prompt_length"),
            chat_template=info.get("chat_template"),
        ),
    )

    def ids(prompt: Any, response: Any) -> list[int]:
        prompt = getattr(prompt, "prompt", prompt)  # a Task
        fitted = tk.fit(tk.prompt_ids(prompt), [tk.completion_ids(prompt, response)], row=-1)
        assert fitted is not None  # keep_end never skips
        return fitted[0] + fitted[1][0]

    return ids


def _pad_right(rows: list[list[int]], pad_id: int, device: Any) -> dict:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


class RewardEnsembleJudge(Judge):
    """Several reward models as one judge: the mean reward, and the members' disagreement (population standard
    deviation of their rewards) as uncertainty; P(a ≻ b) = σ(mean r_a − mean r_b).

    With ``penalty`` λ > 0 the reward is mean − λ·std (uncertainty-weighted optimisation, Coste et al. 2024,
    "Reward Model Ensembles Help Mitigate Overoptimization"): a policy optimised against it is held back where the
    members disagree. Built by ``judge: reward_model`` with ``judge_args: {model: [dir1, dir2, ...]}`` (and
    ``penalty: λ``)."""

    def __init__(self, members: Sequence[Judge], name: str | None = None, penalty: float = 0.0) -> None:
        if len(members) < 2:
            raise ConfigError("an ensemble needs at least two reward models", field="judge_args.model")
        if not (isinstance(penalty, (int, float)) and math.isfinite(penalty) and penalty >= 0):
            raise ConfigError(
                f"the ensemble penalty must be a number ≥ 0 (got {penalty!r})", field="judge_args.penalty"
            )
        self.members = list(members)
        self.penalty = float(penalty)
        self.name = name or f"rm-ensemble:{len(self.members)}" + (f"-{self.penalty:g}std" if self.penalty else "")

    def score_with_uncertainty(self, prompts: list, responses: list) -> tuple[list[float], list[float]]:
        """(mean reward, standard deviation across members) per response."""
        table = [m.score_batch(prompts, responses) for m in self.members]
        k = len(table)
        means = [sum(col) / k for col in zip(*table, strict=True)]
        stds = [
            math.sqrt(sum((x - mu) ** 2 for x in col) / k)
            for col, mu in zip(zip(*table, strict=True), means, strict=True)
        ]
        return means, stds

    def score_batch(self, prompts: list, responses: list) -> list[float]:
        """mean − penalty · std per response (the mean without a penalty)."""
        means, stds = self.score_with_uncertainty(prompts, responses)
        return [m - self.penalty * s for m, s in zip(means, stds, strict=True)]

    def score(self, prompt, response) -> float:
        return self.score_batch([prompt], [response])[0]

    def compare_batch(self, prompts: list, a: list, b: list) -> list[float]:
        ra, rb = self.score_batch(prompts, a), self.score_batch(prompts, b)
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
