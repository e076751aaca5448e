"""The trained policy (full fine-tuning or LoRA) and its reference policy π_ref.

Reference modes (DESIGN.md, "Reference policy"):

* ``adapters_disabled`` — LoRA only: π_ref is the base model, i.e. the policy with its adapters switched
  off (peft's ``disable_adapter()``); no second copy of the weights.
* ``frozen_copy`` — a frozen deep copy of the initial policy (full fine-tuning).
* ``cached`` — reference log-probs of every (row, completion) computed once before training and looked up
  by row index afterwards; no reference forward pass during training, no copy in memory.
* ``none`` — reference-free objectives (SimPO, ORPO).
"""

from __future__ import annotations

import copy as _copy
import hashlib
import warnings
from collections.abc import Iterable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from .compile import compile_blocks, is_compiled, uncompile
from .logprobs import DEFAULT_CHUNK, SequenceScorer

REFERENCE_MODES = ("adapters_disabled", "frozen_copy", "cached", "none")


def apply_lora(
    model: nn.Module,
    r: int = 16,
    alpha: float = 32.0,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    bias: str = "none",
    modules_to_save: list[str] | None = None,
    task_type: str = "CAUSAL_LM",
) -> nn.Module:
    """Wrap ``model`` in peft LoRA adapters (Hu et al. 2021: W + (α/r)·BA, B initialised to zero, so the
    wrapped model starts equal to the base). Only adapter (and ``modules_to_save``) weights stay trainable.
    ``task_type="SEQ_CLS"`` (a reward model) also trains and saves the classifier head (``score``) in full."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        bias=bias,
        modules_to_save=modules_to_save,
        task_type=task_type,
    )
    with warnings.catch_warnings():  # peft reads a transformers attribute that is deprecated (v5 -> v6)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def adapters_are_identity(model: nn.Module) -> bool:
    """True when ``model``'s peft adapters add exactly nothing: every LoRA ``B`` is zero (its initialisation),
    no DoRA, every ``modules_to_save`` copy equals its original. Then the policy with adapters on *is* the base
    model, and the reference can be scored through the very kernels the first training step runs."""
    try:
        from peft.tuners.lora import LoraLayer
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import ModulesToSaveWrapper
    except ImportError:
        return False
    for module in model.modules():
        if isinstance(module, ModulesToSaveWrapper):
            original = module.original_module.state_dict()
            for copy in module.modules_to_save.values():
                if any(not torch.equal(v, original[k]) for k, v in copy.state_dict().items()):
                    return False
        elif isinstance(module, LoraLayer):
            if any(getattr(module, "use_dora", {}).values()):
                return False
            b_weights = [m.weight for m in module.lora_B.values()] + list(module.lora_embedding_B.values())
            if any(bool(w.detach().ne(0).any()) for w in b_weights):
                return False
        elif isinstance(module, BaseTunerLayer):  # another tuner type (IA3, …): no such guarantee
            return False
    return True


def has_active_dropout(model: nn.Module) -> bool:
    """True when a training-mode forward of ``model`` would drop anything (an ``nn.Dropout`` or a config
    dropout rate such as attention dropout above zero)."""
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    settings = config.to_dict() if hasattr(config, "to_dict") else {}
    return any(
        "dropout" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in settings.items()
    )


def trainable_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Parameters with ``requires_grad`` by name (the adapters for LoRA, everything for full fine-tuning)."""
    return {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy ``state`` into the model's trainable parameters; names must match exactly."""
    params = dict(model.named_parameters())
    wanted = {n for n, p in params.items() if p.requires_grad}
    missing, unexpected = wanted - state.keys(), state.keys() - wanted
    if missing or unexpected:
        raise KeyError(
            f"checkpoint does not match the model: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
        )
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


class Reference:
    """π_ref: ``logprobs(batch)`` gives the (S,) reference sequence log-probs of an ExampleBatch, no grad."""

    mode = "none"

    def logprobs(self, batch: Any) -> Tensor | None:
        return None

    def anchor(self, batch: Any) -> Tensor | None:
        """log π_t of the previous iterate, for objectives that use both π_ref and π_t (INPO, DNO); else None."""
        return None

    def autocast(self) -> Any:
        return nullcontext()


class NoReference(Reference):
    """Reference-free objectives."""


class AdapterDisabledReference(Reference):
    """The LoRA policy with its adapters switched off: exactly the base model."""

    mode = "adapters_disabled"

    def __init__(self, scorer: SequenceScorer, autocast: Any = nullcontext):
        if not is_peft(scorer.model):
            raise ValueError("adapters_disabled needs a LoRA (peft) policy")
        self.scorer, self._autocast = scorer, autocast

    def autocast(self) -> Any:
        return self._autocast()

    @torch.no_grad()
    def logprobs(self, batch: Any) -> Tensor:
        was_training = self.scorer.training
        self.scorer.eval()  # no adapter dropout / no dropout for the reference
        try:
            with self.scorer.model.disable_adapter(), self.autocast():
                return self.scorer(batch.sequences).float()
        finally:
            self.scorer.train(was_training)


class FrozenCopyReference(Reference):
    """A frozen deep copy of the initial policy (eval mode, no gradients).

    ``copy=False`` scores with ``model`` itself as it is now — what building a cache before the first
    optimizer step needs, without the memory of a copy. ``training_graph=True`` (with ``copy=False``) scores in
    training mode with autograd recording (the graph is dropped at once): a compiled model then runs the very
    graph its training steps run, bitwise the same log-probs and no second compilation of an inference graph.
    Only for a model whose training-mode forward is deterministic (:func:`has_active_dropout` false).
    """

    mode = "frozen_copy"

    def __init__(
        self,
        model: nn.Module,
        chunked_head: bool | str = "auto",
        chunk_size: int = DEFAULT_CHUNK,
        autocast: Any = nullcontext,
        copy: bool = True,
        training_graph: bool = False,
    ):
        if training_graph and (copy or has_active_dropout(model)):
            raise ValueError("training_graph scores the model itself (copy=False) and needs a forward without dropout")
        self.training_graph = training_graph
        if copy:
            compiled = is_compiled(model)
            # a compiled block's callable is bound to the original module: compile the copy on its own
            model = uncompile(_copy.deepcopy(model)).eval()
            model.requires_grad_(False)
            if compiled:
                compile_blocks(model)
        self.scorer = SequenceScorer(model, chunked_head, chunk_size)
        self._autocast = autocast

    def autocast(self) -> Any:
        return self._autocast()

    @torch.no_grad()
    def logprobs(self, batch: Any) -> Tensor:
        was_training = self.scorer.training
        self.scorer.train(self.training_graph)
        try:
            with self.autocast(), torch.set_grad_enabled(self.training_graph):
                return self.scorer(batch.sequences).detach().float()
        finally:
            self.scorer.train(was_training)


class CachedReference(Reference):
    """Reference log-probs looked up by (row, completion slot): ``table[row, k]``, NaN = not computed."""

    mode = "cached"

    def __init__(self, table: Tensor):
        self.table = table.float()

    def logprobs(self, batch: Any) -> Tensor:
        slots = batch.sequences.num_sequences // batch.num_examples
        rows = batch.index.to(self.table.device)
        values = self.table[rows][:, :slots].t().reshape(-1)  # sequence k*G + g = slot k of row g
        if torch.isnan(values).any():
            raise KeyError("a batch row has no cached reference log-prob; was the cache built on this dataset?")
        return values.to(batch.sequences.input_ids.device)


@torch.no_grad()
def build_reference_table(reference: Reference, batches: Iterable[Any], num_rows: int) -> Tensor:
    """Run ``reference`` over ``batches`` into a ``(num_rows, slots)`` table (NaN where no batch had the row).

    The batches share one (outer) autocast region: autocast's cast of each trainable weight is cached for the
    region, so the weights are cast once for the whole pass rather than once per batch (same values)."""
    filled: list[tuple[Tensor, Tensor]] = []
    with reference.autocast():
        for batch in batches:
            values = reference.logprobs(batch).float().cpu()
            g = batch.num_examples
            filled.append((batch.index.cpu(), values.reshape(-1, g).t()))  # (G, K): row g, slot k
    slots = max((v.shape[1] for _, v in filled), default=1)
    table = torch.full((num_rows, slots), float("nan"))
    for rows, values in filled:
        table[rows, : values.shape[1]] = values
    return table


def examples_fingerprint(examples: Iterable[Any], extra: str = "") -> str:
    """A hash of tokenised examples (row, prompt ids, completion ids): keys a reference cache to its data."""
    h = hashlib.sha256(extra.encode())
    for ex in examples:
        h.update(repr((ex.index, ex.prompt_ids, ex.completions)).encode())
    return h.hexdigest()[:16]


def save_model_dir(model: nn.Module, path: Any, *, merge: bool, model_cfg: Any) -> str:
    """Write ``model`` as the run's final model directory ``path`` (the tokenizer is the caller's) and say what
    was written: ``"adapter"``, ``"merged"`` or ``"full"``.

    A LoRA policy is saved as its adapter (peft ``save_pretrained``: ``adapter_config.json`` +
    ``adapter_model.safetensors``), its base named as ``model_cfg.name_or_path`` gives it (an embedded name or
    hub id as it is, a local path made absolute), unless ``merge``: then the adapters are merged into the base
    weights (in place: the model is a plain model afterwards) and the model is written in its own dtype
    (:func:`preflab.models.loading.save_dtype`), not the fp32 master weights. A reward model (its head's
    settings live in config.json, which the judges read) is always merged. A fully fine-tuned model is written
    as it is."""
    from .loading import save_dtype
    from .reward import REWARD_CONFIG_KEY

    if not is_peft(model):
        model.save_pretrained(path, safe_serialization=True)
        return "full"
    reward = getattr(getattr(model, "config", None), REWARD_CONFIG_KEY, None) is not None
    if not (merge or reward):
        _name_adapter_base(model, model_cfg)
        # preflab never resizes the vocabulary: no full embedding matrices in the adapter (peft's "auto" would
        # look the base model up on the Hub to find out)
        model.save_pretrained(path, safe_serialization=True, save_embedding_layers=False)
        return "adapter"
    merged = model.merge_and_unload()
    _save_in_dtype(merged, path, save_dtype(model_cfg.dtype, merged))
    return "merged"


def _name_adapter_base(model: nn.Module, model_cfg: Any) -> None:
    """peft records the path the base was loaded from (for the embedded model, a cache directory); name it as
    the config does, so the adapter loads on another machine. A model given in Python keeps what peft read."""
    from pathlib import Path

    from .embedded import converted_location
    from .loading import portable_base_name

    name = model_cfg.name_or_path
    # where load_model read the configured model from (no conversion, no network: it was loaded already)
    loaded_from = str(converted_location(name) or Path(name).expanduser())
    for config in model.peft_config.values():
        recorded = config.base_model_name_or_path
        if not recorded:
            continue
        same = recorded == loaded_from or (
            Path(recorded).exists()
            and Path(loaded_from).exists()
            and Path(recorded).resolve() == Path(loaded_from).resolve()
        )
        if same:
            config.base_model_name_or_path = portable_base_name(name)
            config.revision = model_cfg.revision


def _save_in_dtype(model: nn.Module, path: Any, dtype: str | None) -> None:
    """``save_pretrained`` with the floating-point weights in ``dtype`` (None: as they are), so config.json says
    that dtype and tied weights are stored once, as transformers does; the model in memory gets its own
    weights back afterwards (the cast copies live only while saving)."""
    target = getattr(torch, dtype) if dtype else None
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if target is None or all(t.dtype == target for t in tensors):
        model.save_pretrained(path, safe_serialization=True)
        return
    originals = [t.data for t in tensors]
    try:
        for t in tensors:
            t.data = t.data.to(target)
        model.save_pretrained(path, safe_serialization=True)
    finally:
        for t, data in zip(tensors, originals, strict=True):
            t.data = data
