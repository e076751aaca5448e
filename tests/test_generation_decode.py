"""The sampler's own decoding loop against Hugging Face's references: greedy tokens equal ``generate``'s,
top-k / top-p filtering equals the logits warpers, and CDF-inversion draws follow the distribution."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

from preflab.generation.decode import decode, draw, filter_logits, invert, supports_decode
from preflab.generation.sampler import _encode_left, bf16_weights, eos_ids, render_prompts

PROMPTS = ["hi", "tell me a story about a cat", "2+2?", "a much longer prompt with many more words in it"]


def test_greedy_decode_equals_hf_generate_with_compaction(tiny):
    model, tok = tiny
    enc = _encode_left(tok, render_prompts(tok, PROMPTS), model.device)
    first = decode(
        model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8, stop_ids=[0], pad_id=0, temperature=0
    )
    # make an early greedy token of two rows a stop token, so those rows leave the batch mid-way
    stop = [int(first[0, 2]), int(first[2, 4])]
    pad = tok.pad_token_id
    ref = model.generate(
        **enc,
        max_new_tokens=12,
        do_sample=False,
        eos_token_id=stop,
        pad_token_id=pad,
        temperature=None,
        top_p=None,
        top_k=None,
    )[:, enc["input_ids"].shape[1] :]
    for compact in (True, False):
        ours = decode(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            max_new_tokens=12,
            stop_ids=stop,
            pad_id=pad,
            temperature=0,
            compact=compact,
        )
        width = ref.shape[1]  # generate stops when every row has ended
        assert torch.equal(ours[:, :width], ref)
        assert (ours[:, width:] == pad).all()
    assert any(int(t) in stop for t in ref[0]), "the test must exercise rows that finish early"


@pytest.mark.parametrize("top_k,top_p", [(0, 0.9), (5, 1.0), (20, 0.5), (0, 0.05)])
def test_filtering_matches_hf_warpers(top_k, top_p):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 300, generator=g) * 3
    logits[0, :10] = 5.0  # exact ties at the cut-off
    ours = filter_logits(logits, 0.7, top_k, top_p)
    ref = logits / 0.7
    if top_k:
        ref = TopKLogitsWarper(top_k)(None, ref)
    if top_p < 1:
        ref = TopPLogitsWarper(top_p)(None, ref)
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    assert torch.allclose(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])


def test_inversion_draws_follow_the_distribution():
    probs = torch.tensor([0.5, 0.0, 0.2, 0.25, 0.05])
    logits = probs.log().expand(40_000, -1).clone()
    g = torch.Generator().manual_seed(1)
    counts = torch.bincount(draw(logits, 1.0, generator=g), minlength=5).double()
    n = counts.sum()
    assert counts[1] == 0  # a zero-probability token is never drawn
    chi2 = sum(((counts[i] - n * p) ** 2 / (n * p)).item() for i, p in enumerate(probs.tolist()) if p > 0)
    assert chi2 < 16.3  # 3 degrees of freedom, p = 0.001
    # temperature sharpens: at T=0.5 the distribution is probs^2 renormalised
    sharp = probs**2 / (probs**2).sum()
    c2 = torch.bincount(draw(logits, 0.5, generator=g), minlength=5).double() / n
    assert math.isclose(c2[0].item(), sharp[0].item(), abs_tol=0.01)
    assert torch.equal(draw(logits[:3], 0.0), torch.zeros(3, dtype=torch.long))


def test_bf16_weights_restores_the_same_tensors(tiny):
    model, _ = tiny
    before = {n: p.data_ptr() for n, p in model.named_parameters()}
    buffers = {n: b.dtype for n, b in model.named_buffers()}
    with bf16_weights(model, True):
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert {n: b.dtype for n, b in model.named_buffers()} == buffers
    assert all(p.data_ptr() == before[n] and p.dtype == torch.float32 for n, p in model.named_parameters())
    with bf16_weights(model, False):
        assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("pays", [True, False])
def test_bf16_weights_by_default_only_where_bf16_pays(tiny, monkeypatch, pays):
    """None (the default) casts only where the timed probe finds bf16 matmuls faster; True casts wherever the
    CPU supports bf16; False never."""
    import preflab.models.bf16 as probe
    from preflab.generation import precision

    model, _ = tiny
    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: True)
    monkeypatch.setattr(probe, "cpu_bf16_pays", lambda: pays)
    assert precision.casts_weights(model, None) is pays
    assert precision.casts_weights(model, True) is True
    assert precision.casts_weights(model, False) is False
    with bf16_weights(model, None):
        dtypes = {p.dtype for p in model.parameters()}
    assert dtypes == {torch.bfloat16 if pays else torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_supports_decode(tiny):
    model, tok = tiny
    assert supports_decode(model)
    assert eos_ids(model, tok)
    assert not supports_decode(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("vocab", [7, 256, 300, 49_152])
def test_two_level_inversion_equals_one_cdf_over_the_vocabulary(vocab):
    """`invert` returns the token a single float64 CDF over the whole vocabulary gives (up to float32 rounding at a
    boundary), for vocabularies that fill the blocks exactly or not, and never a zero-probability token."""
    g = torch.Generator().manual_seed(vocab)
    probs = torch.rand(4, vocab, generator=g) ** 8
    probs[:, ::3] = 0.0
    probs[1, vocab // 2 :] = 0.0  # a row whose mass ends early: the last blocks are empty
    u = torch.rand(4, 500, generator=g)
    cdf = probs.double().cumsum(-1)
    ref = torch.searchsorted(cdf, (u.double() * cdf[:, -1:]).contiguous(), right=True)
    got = torch.stack([invert(probs, u[:, j : j + 1]) for j in range(u.shape[1])], 1)
    assert (got != ref).float().mean().item() <= 0.002
    assert (probs.gather(1, got) > 0).all()
    edge = torch.full((4, 1), 1 - 2**-24)  # the largest uniform: a token with mass, never a padding slot
    assert (probs.gather(1, invert(probs, edge)[:, None]) > 0).all()
    assert torch.equal(invert(probs, torch.zeros(4, 1)), (probs > 0).int().argmax(-1))
    flat = torch.zeros(2, vocab)
    flat[0, : min(vocab, 5)] = 1.0  # the mass ends in the first block, then empty blocks (and padding)
    flat[1, -1] = 1.0
    assert invert(flat, edge[:2]).tolist() == [min(vocab, 5) - 1, vocab - 1]


def test_last_position_logits_are_one_product_with_a_frozen_head():
    """A prefill's last-position logits equal the full forward's, and with weights that do not require grad (a
    model loaded for inference) the head is one matrix product: asked for as ``logits_to_keep=1``, torch's matmul
    broadcast the head's weight to ``[batch, hidden, vocab]``, copied it and ran a batched product (bmm)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import DynamicCache

    from preflab.generation.decode import _forward, cache_argument, last_logits
    from preflab.models import tiny_model

    model, tok = tiny_model()
    model.requires_grad_(False)
    enc = _encode_left(tok, render_prompts(tok, PROMPTS), model.device)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)

    class Ops(TorchDispatchMode):
        seen: set = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
    for run in (  # a prefill into a cache (the samplers), a plain forward (the LLM judge)
        lambda: _forward(model, ids, mask, pos, DynamicCache(), cache_argument(model)),
        lambda: last_logits(model, ids, attention_mask=mask, position_ids=pos),
    ):
        with torch.no_grad(), Ops() as ops:
            last = run()
        assert "bmm" not in ops.seen and "mm" in ops.seen
        torch.testing.assert_close(last, full)
