"""Reward models: a causal LM with a one-logit head, r(x, y) read at the sequence's last token.

A Bradley–Terry reward model (Bradley & Terry 1952; Stiennon et al. 2020; Ouyang et al. 2022, InstructGPT) is the
language model with its vocabulary head replaced by a linear ``score`` head with one output; the reward of a
(prompt, response) is that head applied to the final hidden state of the last token. transformers builds this
model for every decoder family from a causal LM checkpoint (``AutoModelForSequenceClassification`` with
``num_labels=1``: ``LlamaForSequenceClassification`` for SmolLM2), and TRL's ``RewardTrainer`` writes the same
format, so a trained model loads with ``from_pretrained`` anywhere.

Position convention: transformers reads the logit at the *rightmost token that is not the pad token*
(``config.pad_token_id``). :class:`RewardScorer` reads the same token in every batch layout of
:mod:`preflab.data.collate` (padded, packed, prefix-shared), so rewards during training equal those of the saved
model's own forward on the same ids. With a tokenizer whose pad token is its EOS (``<|im_end|>`` in SmolLM2)
that is the token before the final EOS, exactly as transformers reads it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, ModelNotFoundError
from .attention import scoring_attention
from .logprobs import attention_mask_for
from .reward_heads import head_of_model

__all__ = [
    "REWARD_CONFIG_KEY",
    "RewardScorer",
    "check_reward_checkpoint",
    "check_tokenizer",
    "last_token_positions",
    "load_reward_model",
]

#: Attribute of the saved model's config (config.json) that records how preflab tokenised the training data, so
#: a judge scores new responses on the same ids (see :class:`preflab.feedback.judges.RewardModelJudge`).
REWARD_CONFIG_KEY = "preflab_reward"


def _is_classifier(config: Any) -> bool:
    return any(str(a).endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))


def check_reward_checkpoint(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    field: str = "judge_args.model",
) -> None:
    """A checkpoint read as a reward model must be a sequence classifier (a trained head): a causal LM would get a
    freshly initialised, random head. A one-line ConfigError names it and ``field``."""
    from transformers import AutoConfig

    from .loading import _not_found, is_adapter_dir, resolve_model

    if is_adapter_dir(name_or_path):
        raise ConfigError(
            f"model '{name_or_path}' is a LoRA adapter, not a reward model with a trained head (preflab writes a "
            "reward model's final/ merged); pass a bt_reward or gpm run's final/",
            field=field,
        )
    try:
        config = AutoConfig.from_pretrained(resolve_model(name_or_path), trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _not_found(name_or_path, exc) from None
    if not _is_classifier(config):
        arch = ", ".join(getattr(config, "architectures", None) or [type(config).__name__])
        raise ConfigError(
            f"model '{name_or_path}' ({arch}) has no trained reward head; train one with preflab train "
            "(algorithm: bt_reward or gpm) or pass a sequence-classification checkpoint",
            field=field,
        )


def check_tokenizer(model: Any, tokenizer: Any, name: str, field: str = "judge_args.model") -> None:
    """The tokenizer's ids must index the model's embedding table (a tokenizer from another model family would
    read garbage or fail deep inside the forward): a one-line ConfigError."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = int(emb.num_embeddings) if emb is not None else int(getattr(model.config, "vocab_size", 0) or 0)
    if rows and len(tokenizer) > rows:
        raise ConfigError(
            f"model '{name}': its tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"has {rows} rows (a tokenizer from another model?)",
            field=field,
        )


def load_reward_model(
    name_or_path: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    pad_token_id: int | None = None,
    num_labels: int = 1,
) -> Any:
    """``AutoModelForSequenceClassification`` with ``num_labels`` outputs (1: a Bradley–Terry reward; more for the
    heads of :mod:`preflab.models.reward_heads`) from a causal LM checkpoint (a fresh ``score`` head, initialised
    from the global seed) or from a classifier with as many labels (its trained head). A classifier with another
    number of labels, or an architecture transformers has no classification class for, is a one-line error
    naming ``model.name_or_path``. ``pad_token_id`` is written into the config when it has none (batched pooling
    needs it)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from .loading import _not_found, _torch_dtype, checkpoint_dtype, hub_kernels_off, resolve_model

    resolved = resolve_model(name_or_path)
    try:
        config = AutoConfig.from_pretrained(resolved, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as exc:
        raise _not_found(name_or_path, exc) from None
    if _is_classifier(config) and config.num_labels != num_labels:
        what = "a Bradley–Terry reward model has one" if num_labels == 1 else f"this reward head needs {num_labels}"
        raise ConfigError(
            f"model '{name_or_path}' is a classifier with {config.num_labels} labels; {what} (start "
            "from its causal LM instead)",
            field="model.name_or_path",
        )
    config.num_labels = num_labels
    if getattr(config, "pad_token_id", None) is None and pad_token_id is not None:
        config.pad_token_id = pad_token_id
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved,
            config=config,
            dtype=_torch_dtype(dtype),
            trust_remote_code=trust_remote_code,
            revision=revision,
            **hub_kernels_off(),
        )
    except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
        if "Unrecognized configuration class" not in str(exc):
            raise
        raise ConfigError(
            f"model '{name_or_path}' ({type(config).__name__}) has no sequence-classification class "
            "in transformers, so it cannot carry a reward head",
            field="model.name_or_path",
        ) from None
    except OSError as exc:
        raise ModelNotFoundError(f"model '{name_or_path}': {str(exc).splitlines()[0][:200]}") from None
    model.preflab_checkpoint_dtype = checkpoint_dtype(resolved, revision)  # a merged final/ is written in it
    model.eval()
    return model


def last_token_positions(batch: Any, pad_id: int | None) -> Tensor:
    """Flat index (into the ``R·T`` grid of a :class:`~preflab.data.collate.SequenceBatch`) of each sequence's
    rightmost non-pad completion token; a sequence whose completion is all pad tokens is read at its prompt's
    last token (transformers' rule on the same ids)."""
    n = batch.target_ids.shape[0]
    seq, idx = batch.sequence_index, torch.arange(n, device=batch.target_ids.device)
    real = batch.target_ids != pad_id if pad_id is not None else torch.ones_like(seq, dtype=torch.bool)
    empty = torch.full((batch.num_sequences,), -1, dtype=torch.long, device=seq.device)
    last = empty.scatter_reduce(0, seq[real], idx[real], "amax", include_self=True)
    first = torch.full_like(empty, n).scatter_reduce(0, seq, idx, "amin", include_self=True)
    # token j of a sequence sits at (the logit index that predicts it) + 1; the first one's is the prompt's end
    return torch.where(last >= 0, batch.logit_index[last.clamp_min(0)] + 1, batch.logit_index[first.clamp_max(n - 1)])


class RewardScorer(nn.Module):
    """``forward(batch) -> (S,)`` rewards of every sequence of a ``SequenceBatch`` (any layout); for a head that
    is not one reward per sequence (:mod:`preflab.models.reward_heads`: ``gpm``, ``mixture``), ``(S, num_labels)``.

    The trainer's seam between a model and an objective: where :class:`~preflab.models.logprobs.SequenceScorer`
    turns a batch into summed log-probs, this turns it into rewards, and the same loop trains either. Decoder
    classifiers (a backbone and a ``score`` head: Llama, Qwen2, Mistral, Gemma …) run the backbone once on the
    layout's rows and apply the head at :func:`last_token_positions`; any other classifier runs its own forward
    on padded rows (its own pooling).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        inner = self.inner
        self.decoder = getattr(inner, getattr(inner, "base_model_prefix", ""), None) is not None and hasattr(
            inner, "score"
        )
        self.pad_id = getattr(inner.config, "pad_token_id", None)
        self.head = head_of_model(inner)

    @property
    def inner(self) -> nn.Module:
        """The transformers model (under peft's wrapper when LoRA is on)."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    def forward(self, batch: Any) -> Tensor:
        inner = self.inner
        if not self.decoder:
            if batch.layout != "padded":
                raise ConfigError(
                    f"{type(inner).__name__} pools on its own; use train.layout: padded", field="train.layout"
                )
            return self.head.output(self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits)
        backbone = getattr(inner, inner.base_model_prefix)
        checkpointing = bool(getattr(backbone, "gradient_checkpointing", False))
        with scoring_attention(None if checkpointing else inner.config, batch.input_ids):
            mask = attention_mask_for(inner, batch.attention_mask, batch.position_ids)
            hidden = backbone(
                input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids, use_cache=False
            ).last_hidden_state
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, last_token_positions(batch, self.pad_id))
        return self.head.output(inner.score(hidden))
