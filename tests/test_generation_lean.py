"""The lean decoding step (``preflab.generation.lean``) against the model's own forward: the same tokens and
per-token log-probs for Llama, Qwen2 (biased projections) and Mistral models, with a LoRA adapter folded in (and
disabled), and the fall-back to the forward for models it does not reproduce."""

from __future__ import annotations

import pytest
import torch

from preflab.generation import SamplingParams, sample
from preflab.generation.lean import LeanDecoder, lean_decoder
from preflab.models import tiny_model, tiny_tokenizer

PROMPTS = ["hi", "tell me a story about a cat", "2+2?", "a much longer prompt with many more words in it"]


def _sizes(tok) -> dict:
    """A two-layer decoder's config arguments (grouped-query attention: 4 heads over 2 KV heads)."""
    return dict(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )


def _tiny(kind: str):
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if kind == "llama":
        return tiny_model(seed=3)
    tok = tiny_tokenizer()
    common = _sizes(tok)
    with torch.random.fork_rng():
        torch.manual_seed(4)
        if kind == "qwen2":
            model = Qwen2ForCausalLM(Qwen2Config(**common, use_sliding_window=False, rope_theta=1000.0))
        else:
            model = MistralForCausalLM(MistralConfig(**common, sliding_window=None))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.5)  # biased q/k/v projections (Qwen2) must enter the stacked product
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def _run(model, tok, lean: bool, **kw):
    params = dict(max_new_tokens=8, temperature=1.0, n=3, batch_size=5, seed=7, bf16=False, engine="rollout")
    params.update(kw)
    return sample(model, tok, PROMPTS, SamplingParams(**params, lean=lean, return_token_logprobs=True))


def _assert_same(a, b) -> None:
    assert [[c.token_ids for c in row] for row in a] == [[c.token_ids for c in row] for row in b]
    for ra, rb in zip(a, b, strict=True):
        for ca, cb in zip(ra, rb, strict=True):
            assert ca.token_logprobs == pytest.approx(cb.token_logprobs, abs=2e-5)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "mistral"])
def test_lean_step_gives_the_forwards_tokens_and_logprobs(kind, monkeypatch):
    model, tok = _tiny(kind)
    assert isinstance(lean_decoder(model), LeanDecoder)
    calls = []
    real = LeanDecoder.step
    monkeypatch.setattr(LeanDecoder, "step", lambda self, *a: calls.append(1) or real(self, *a))
    lean = _run(model, tok, True)
    assert calls  # the decoding steps ran through the lean step ...
    calls.clear()
    ref = _run(model, tok, False)
    assert not calls  # ... and the reference through the model's forward
    _assert_same(lean, ref)
    greedy = dict(temperature=0.0, n=1, max_new_tokens=12)
    _assert_same(_run(model, tok, True, **greedy), _run(model, tok, False, **greedy))


def test_lora_adapter_is_folded_into_the_lean_weights_and_disabling_it_is_honoured():
    from peft import LoraConfig, get_peft_model

    base, tok = tiny_model(seed=5)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.1))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)  # a trained adapter: B ≠ 0, so the folded weights differ from the base
    model.eval()
    adapted = _run(model, tok, True)
    _assert_same(adapted, _run(model, tok, False))
    with model.disable_adapter():
        plain = _run(model, tok, True)
        _assert_same(plain, _run(model, tok, False))
    assert [[c.token_ids for c in r] for r in plain] != [[c.token_ids for c in r] for r in adapted]
    model.train()  # a live LoRA dropout is not a fixed weight: the forward decodes
    assert lean_decoder(model) is None


def test_models_the_lean_step_does_not_reproduce_decode_through_their_forward():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model, tok = tiny_model(seed=1)
    model.config.hidden_act = "gelu"  # another activation
    assert lean_decoder(model) is None
    qwen3 = Qwen3ForCausalLM(Qwen3Config(**_sizes(tok), head_dim=16))
    assert lean_decoder(qwen3) is None  # q/k norms: not in the lean step


@pytest.mark.parametrize("extra", [dict(use_dora=True), dict(lora_bias=True)])
def test_adapters_that_are_not_a_weight_delta_decode_through_the_forward(extra):
    from peft import LoraConfig, get_peft_model

    base, _ = tiny_model(seed=6)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], **extra)).eval()
    assert lean_decoder(model) is None
