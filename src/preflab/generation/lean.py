"""A lean decoding step for Llama-family models: the rollout engine's one-token forward without the framework.

A Hugging Face decoder forward spends, per layer and step, some twenty small tensor operations and as many Python
calls around the seven projections (masks, rotary tables, views, casts, the cache interface). At the batch sizes of
a policy-gradient rollout (16 rows) those cost about as much as the products themselves on a CPU. :class:`LeanDecoder`
computes the same step with fewer, larger operations:

* the query, key and value projections are one product with the three weights stacked, and the MLP's gate and up
  projections another (five products per layer instead of seven), each with a weight prepacked once per
  :func:`~preflab.generation.sample` call (:mod:`.packed`'s oneDNN ops, where this torch build has them);
* the rotary cosines and sines are computed once per step for all layers (by the model's own rotary module, so
  every rope scaling the model supports is honoured), RMSNorm is ``torch.nn.functional.rms_norm`` (fp32) or the
  model's formula (other dtypes);
* keys and values go straight into the engine's slot cache, and attention is the engine's grouped decoding
  attention (:func:`preflab.generation.engine._decode_attention`).

The prefill stays Hugging Face's own forward. The weights are a snapshot taken when the decoder is built: a LoRA
adapter (peft, active and not merged) is folded into the snapshot as ``W + scaling·B·A``, which is what the adapter
computes in eval mode. Models outside :data:`LEAN_MODEL_TYPES`, or with parts it does not know (another activation,
quantised or DoRA layers, an embedding adapter), get ``None`` from :func:`lean_decoder` and decode through the
model's forward as before. The step's logits equal the forward's up to the order of floating-point accumulation
(tests: tiny Llama and Qwen2 models, with and without a LoRA adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

LEAN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
"""Architectures whose decoder layer is exactly: RMSNorm → attention (q/k/v projections with optional bias, RoPE on
queries and keys, grouped-query attention, output projection) → residual → RMSNorm → SiLU-gated MLP → residual."""


@dataclass
class _Layer:
    qkv: object
    qkv_bias: object
    o: object
    o_bias: object
    gate_up: object
    gate_up_bias: object
    down: object
    down_bias: object
    norm_in: object
    norm_post: object


def _effective_linear(module):
    """(weight, bias) that ``module`` applies in eval mode: a plain ``nn.Linear``'s own, or a peft LoRA layer's base
    plus its active adapters' deltas. None for anything else (quantised layers, DoRA, custom forwards)."""
    import torch

    if type(module) is torch.nn.Linear:
        if "forward" in module.__dict__:
            return None  # a hooked module (accelerate offloading): its forward is not F.linear
        return module.weight, module.bias
    base = getattr(module, "base_layer", None)
    if base is None or type(base) is not torch.nn.Linear or not hasattr(module, "lora_A"):
        return None
    weight = base.weight
    if getattr(module, "merged", False):  # the deltas are in the base weight already (peft unmerges if disabled)
        return None if getattr(module, "disable_adapters", False) else (weight, base.bias)
    if getattr(module, "disable_adapters", False):
        return weight, base.bias
    delta = None
    for name in module.active_adapters:
        if name not in module.lora_A:
            continue
        if getattr(module, "use_dora", {}).get(name, False) or getattr(module, "lora_bias", {}).get(name, False):
            return None  # DoRA's magnitude, lora_B's bias: not a weight delta
        if type(module.lora_A[name]) is not torch.nn.Linear:
            return None
        dropout = module.lora_dropout[name]
        if module.training and not (isinstance(dropout, torch.nn.Identity) or getattr(dropout, "p", 1.0) == 0):
            return None  # a live dropout on the adapter's input: not a fixed weight
        d = module.get_delta_weight(name)
        delta = d if delta is None else delta + d
    if delta is not None:
        weight = weight + delta.to(weight.dtype)
    return weight, base.bias


def _stack(parts):
    """One weight (and bias) from several linears applied to the same input, or None if any is unsupported."""
    import torch

    got = [_effective_linear(m) for m in parts]
    if any(g is None or g[0] is None for g in got):
        return None
    weight = torch.cat([w for w, _ in got]) if len(got) > 1 else got[0][0]
    biases = [b for _, b in got]
    if all(b is None for b in biases):
        return weight, None
    bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for (w, _), b in zip(got, biases, strict=True)])
    return weight, bias.to(weight.dtype)


def _pack(weight, rows_hint: int):
    """The weight in oneDNN's blocked layout where this build and CPU have the ops, else as it is."""
    import torch

    from .packed import packing_available

    if weight.device.type == "cpu" and packing_available(str(weight.dtype).removeprefix("torch.")):
        return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), rows_hint), True
    return weight.contiguous(), False


def lean_decoder(model, *, rows_hint: int = 64) -> LeanDecoder | None:
    """A :class:`LeanDecoder` for ``model`` (a causal LM of :data:`LEAN_MODEL_TYPES`, possibly inside a peft
    wrapper), or None where the model has parts the lean step does not reproduce exactly."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in LEAN_MODEL_TYPES:
        return None
    if getattr(config, "hidden_act", None) != "silu":
        return None
    if base.training and getattr(config, "attention_dropout", 0.0):
        return None
    body = getattr(base, "model", None)
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if body is None or not all(hasattr(body, n) for n in needed) or not hasattr(base, "lm_head"):
        return None
    if type(body.embed_tokens) is not torch.nn.Embedding:
        return None
    with torch.no_grad():
        head = _stack([base.lm_head])
        if head is None or head[1] is not None:
            return None
        layers = []
        for layer in body.layers:
            attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
            if attn is None or mlp is None or not all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
                return None
            if any(hasattr(attn, n) for n in ("q_norm", "k_norm", "sinks")):
                return None
            qkv, o = _stack([attn.q_proj, attn.k_proj, attn.v_proj]), _stack([attn.o_proj])
            gate_up, down = _stack([mlp.gate_proj, mlp.up_proj]), _stack([mlp.down_proj])
            norms = (layer.input_layernorm, layer.post_attention_layernorm)
            if None in (qkv, o, gate_up, down) or not all(hasattr(n, "variance_epsilon") for n in norms):
                return None
            layers.append(
                _Layer(
                    *(_pack(qkv[0], rows_hint), qkv[1]),
                    *(_pack(o[0], rows_hint), o[1]),
                    *(_pack(gate_up[0], rows_hint), gate_up[1]),
                    *(_pack(down[0], rows_hint), down[1]),
                    *norms,
                )
            )
        return LeanDecoder(base, layers, _pack(head[0], rows_hint))


class LeanDecoder:
    """The one-token decoding step of a Llama-family model over the engine's slot cache (module docstring)."""

    def __init__(self, base, layers: list[_Layer], head) -> None:
        attn = base.model.layers[0].self_attn
        config = base.config
        self.base, self.layers, self.head = base, layers, head
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.scaling = attn.scaling
        self.intermediate = config.intermediate_size
        from .engine import _decode_attention

        self._attend = _decode_attention

    @staticmethod
    def _linear(x, packed, bias):
        import torch
        import torch.nn.functional as F

        weight, is_packed = packed
        if is_packed and x.dtype == weight.dtype:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)

    @staticmethod
    def _norm(x, module):
        import torch
        import torch.nn.functional as F

        if x.dtype == torch.float32 and module.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), module.weight, module.variance_epsilon)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)
        return module.weight * h.to(x.dtype)

    def step(self, tokens, positions, cache, mask):
        """Logits ``[rows, vocab]`` for one token per row (``tokens``, ``positions``: ``[rows]``); each layer's new
        key and value are written into ``cache`` (a :class:`~preflab.generation.slots.SlotCache` whose
        ``write_cols`` and ``width`` the engine has set), ``mask`` is the ``[rows, 1, 1, width]`` additive mask."""
        import torch
        import torch.nn.functional as F

        body = self.base.model
        rows = tokens.shape[0]
        h, hkv, d = self.heads, self.kv_heads, self.head_dim
        x = body.embed_tokens(tokens)
        cos, sin = body.rotary_emb(x[:, None], positions[:, None])
        cos, sin = cos[:, None], sin[:, None]  # [rows, 1, 1, d]: one position per row, broadcast over heads
        half = d // 2
        for i, layer in enumerate(self.layers):
            qkv = self._linear(self._norm(x, layer.norm_in), layer.qkv, layer.qkv_bias)
            q = qkv[:, : h * d].view(rows, h, 1, d)
            k = qkv[:, h * d : (h + hkv) * d].view(rows, hkv, 1, d)
            v = qkv[:, (h + hkv) * d :].view(rows, hkv, 1, d)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            keys, values = cache.update(k, v, i)
            out, _ = self._attend(None, q, keys, values, mask, scaling=self.scaling)
            x = x + self._linear(out.reshape(rows, h * d), layer.o, layer.o_bias)
            gu = self._linear(self._norm(x, layer.norm_post), layer.gate_up, layer.gate_up_bias)
            x = x + self._linear(
                F.silu(gu[:, : self.intermediate]) * gu[:, self.intermediate :], layer.down, layer.down_bias
            )
        return self._linear(self._norm(x, body.norm), self.head, None)
