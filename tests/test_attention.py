"""CPU scoring forwards use SDPA's math kernel for short rows: same numbers as the flash kernel, in grad and
no-grad mode alike (so a cached reference equals the policy it was computed from)."""

from __future__ import annotations

import math

import pytest
import torch

import preflab.models.attention as attention
from preflab.data import PreferencePair
from preflab.data.collate import LAYOUTS, collate_examples
from preflab.data.tokenize import tokenize_records
from preflab.models.logprobs import SequenceScorer
from preflab.objectives import PairInputs, get_objective


def _batch(tok, layout):
    records = [PreferencePair("What is 2+2?", "4", "five, I think"), PreferencePair("Say hi", "hi there", "no")]
    examples, _ = tokenize_records(records, tok)
    return collate_examples(examples, "pair", layout, tok.pad_token_id).sequences


@pytest.mark.parametrize("layout", LAYOUTS)
def test_math_kernel_equals_flash_in_value_and_gradient(tiny, layout, monkeypatch):
    model, tok = tiny
    assert model.config._attn_implementation == "sdpa"
    batch = _batch(tok, layout)
    params = [p for p in model.parameters() if p.requires_grad]
    scorer = SequenceScorer(model, chunk_size=7)
    assert attention.prefers_math(model.config, batch.input_ids)
    fast = scorer(batch)
    fast_grads = torch.autograd.grad(fast.sum(), params)
    monkeypatch.setattr(attention, "MATH_BUDGET_BYTES", 0)  # nothing fits: the default (flash) kernel
    assert not attention.prefers_math(model.config, batch.input_ids)
    flash = scorer(batch)
    flash_grads = torch.autograd.grad(flash.sum(), params)
    torch.testing.assert_close(fast, flash, rtol=0, atol=2e-5)
    for a, b in zip(fast_grads, flash_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_grad_and_no_grad_forwards_agree_exactly_under_bf16(tiny):
    """The reference cached without grad equals the policy's first forward with grad: DPO's first loss is log 2."""
    model, tok = tiny
    batch = _batch(tok, "prefix_shared")
    scorer = SequenceScorer(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            ref = scorer(batch)
        policy = scorer(batch)
    assert torch.equal(policy.detach(), ref)
    g = batch.num_sequences // 2
    spec = get_objective("dpo")
    loss, _ = spec(PairInputs(policy_chosen=policy[:g], policy_rejected=policy[g:], ref_chosen=ref[:g],
                              ref_rejected=ref[g:]), spec.make_params(beta=0.1))
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_budget_counts_every_layer_and_head(tiny, monkeypatch):
    model, _ = tiny
    cfg = model.config
    want = 8 * 3 * cfg.num_attention_heads * 50 * 50 * cfg.num_hidden_layers
    assert attention.math_score_bytes(cfg, rows=3, length=50) == want
    ids = torch.zeros(3, 50, dtype=torch.long)
    assert attention.prefers_math(cfg, ids)
    monkeypatch.setattr(attention, "MATH_BUDGET_BYTES", want - 1)
    assert not attention.prefers_math(cfg, ids)
    assert not attention.prefers_math(None, ids)
