"""CPU training forwards switch sdpa → eager attention for short rows, with the same numbers, and restore it."""

from __future__ import annotations

import pytest
import torch

import preflab.models.attention as attention
from preflab.data import PreferencePair
from preflab.data.collate import LAYOUTS, collate_examples
from preflab.data.tokenize import tokenize_records
from preflab.models.logprobs import SequenceScorer


def _batch(tok, layout):
    records = [PreferencePair("What is 2+2?", "4", "five, I think"), PreferencePair("Say hi", "hi there", "no")]
    examples, _ = tokenize_records(records, tok)
    return collate_examples(examples, "pair", layout, tok.pad_token_id).sequences


def _seen_impls(model):
    seen = []
    hook = model.get_decoder().layers[0].self_attn.register_forward_pre_hook(
        lambda module, args: seen.append(module.config._attn_implementation))
    return seen, hook


@pytest.mark.parametrize("layout", LAYOUTS)
def test_eager_training_forward_equals_sdpa_in_value_and_gradient(tiny, layout, monkeypatch):
    model, tok = tiny
    assert model.config._attn_implementation == "sdpa"
    batch = _batch(tok, layout)
    params = [p for p in model.parameters() if p.requires_grad]
    scorer = SequenceScorer(model, chunk_size=7)
    seen, hook = _seen_impls(model)
    try:
        eager = scorer(batch)
        eager_grads = torch.autograd.grad(eager.sum(), params)
        monkeypatch.setattr(attention, "EAGER_BUDGET_BYTES", 0)  # nothing fits: sdpa
        sdpa = scorer(batch)
        sdpa_grads = torch.autograd.grad(sdpa.sum(), params)
    finally:
        hook.remove()
    assert seen == ["eager", "sdpa"]
    assert model.config._attn_implementation == "sdpa"  # restored after the forward
    torch.testing.assert_close(eager, sdpa, rtol=0, atol=2e-5)
    for a, b in zip(eager_grads, sdpa_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_grad_forward_keeps_sdpa(tiny):
    model, tok = tiny
    seen, hook = _seen_impls(model)
    try:
        with torch.no_grad():
            SequenceScorer(model)(_batch(tok, "prefix_shared"))
    finally:
        hook.remove()
    assert seen == ["sdpa"]


def test_budget_counts_every_layer_and_head(tiny):
    model, _ = tiny
    cfg = model.config
    want = 6 * 3 * cfg.num_attention_heads * 50 * 50 * cfg.num_hidden_layers
    assert attention.eager_score_bytes(cfg, rows=3, length=50) == want
    ids = torch.zeros(3, 50, dtype=torch.long)
    configs = attention.attention_configs(model)
    assert attention.prefers_eager(configs, ids)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(attention, "EAGER_BUDGET_BYTES", want - 1)
        assert not attention.prefers_eager(configs, ids)


def test_implementation_is_restored_when_the_forward_fails(tiny):
    model, _ = tiny
    configs = attention.attention_configs(model)
    with pytest.raises(RuntimeError), attention.training_attention(configs, torch.zeros(1, 4, dtype=torch.long)):
        assert model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"
