"""Chunked log-probs equal the naive full-vocabulary log_softmax, in value and in gradient."""

from __future__ import annotations

import pytest
import torch

from preflab.data import PreferencePair
from preflab.data.collate import LAYOUTS, collate_examples
from preflab.data.tokenize import tokenize_records
from preflab.models.logprobs import (
    SequenceScorer,
    linear_token_logprobs,
    naive_sequence_logprobs,
    segment_sum,
    token_logprobs,
)


def test_token_logprobs_match_log_softmax_for_every_chunk_size():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 53, generator=gen) * 4
    targets = torch.randint(0, 53, (37,), generator=gen)
    naive = torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1)
    for chunk in (1, 5, 37, 1000):
        torch.testing.assert_close(token_logprobs(logits, targets, chunk), naive, rtol=0, atol=1e-5)


def test_token_logprobs_hand_value():
    # logits (0, log 3): softmax = (1/4, 3/4)
    logits = torch.tensor([[0.0, torch.log(torch.tensor(3.0)).item()]])
    out = token_logprobs(logits, torch.tensor([1]), chunk_size=1)
    assert out.item() == pytest.approx(torch.log(torch.tensor(0.75)).item(), abs=1e-6)


@pytest.mark.parametrize("chunk", [4, 64])  # several chunks (logits recomputed); one chunk (the forward's kept)
@pytest.mark.parametrize("bias", [False, True])
def test_linear_token_logprobs_value_and_gradients(bias, chunk):
    gen = torch.Generator().manual_seed(1)
    hidden = torch.randn(23, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(41, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(41, generator=gen, dtype=torch.float64, requires_grad=True) if bias else None
    targets = torch.randint(0, 41, (23,), generator=gen)
    upstream = torch.randn(23, generator=gen, dtype=torch.float64)

    naive = (
        torch.log_softmax(torch.nn.functional.linear(hidden, weight, b), -1).gather(-1, targets[:, None]).squeeze(-1)
    )
    naive_grads = torch.autograd.grad((naive * upstream).sum(), [hidden, weight] + ([b] if bias else []))
    out = linear_token_logprobs(hidden, weight, targets, b, chunk_size=chunk)
    loss = (out * upstream.float()).sum()
    grads = torch.autograd.grad(loss, [hidden, weight] + ([b] if bias else []), retain_graph=True)
    again = torch.autograd.grad(loss, [hidden, weight] + ([b] if bias else []))  # kept logits are used once
    torch.testing.assert_close(out.double(), naive, rtol=1e-6, atol=1e-6)  # fp32 output
    for got, second, want in zip(grads, again, naive_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(second, want, rtol=1e-5, atol=1e-6)


def test_segment_sum():
    out = segment_sum(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0, 2, 0, 2]), 3)
    assert out.tolist() == [4.0, 0.0, 6.0]


def _records():
    return [
        PreferencePair("What is 2+2?", "4", "five, I think"),
        PreferencePair("Say hi", "hi there, friend", "no"),
        PreferencePair(
            [{"role": "system", "content": "be brief"}, {"role": "user", "content": "yo"}], "hello!", "go away please"
        ),
    ]


def _naive(model, examples):
    """Full log_softmax over right-padded rows: chosen rows then rejected rows."""
    rows = [(ex.prompt_ids, ex.completions[k]) for k in range(2) for ex in examples]
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    comp = torch.zeros_like(ids)
    attn = torch.zeros_like(ids)
    for r, (p, c) in enumerate(rows):
        ids[r, : len(p) + len(c)] = torch.tensor(p + c)
        comp[r, len(p) : len(p) + len(c)] = 1
        attn[r, : len(p) + len(c)] = 1
    return naive_sequence_logprobs(model, ids, comp, attn)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunked_head", [True, False])
def test_scorer_equals_naive_in_every_layout(tiny, layout, chunked_head):
    model, tok = tiny
    examples, _ = tokenize_records(_records(), tok)
    with torch.no_grad():
        want = _naive(model, examples)
        batch = collate_examples(examples, "pair", layout, tok.pad_token_id)
        got = SequenceScorer(model, chunked_head=chunked_head, chunk_size=5)(batch.sequences)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


def test_scorer_gradients_equal_naive(tiny):
    model, tok = tiny
    examples, _ = tokenize_records(_records(), tok)
    params = [p for p in model.parameters() if p.requires_grad]
    want = torch.autograd.grad(_naive(model, examples).sum(), params)
    batch = collate_examples(examples, "pair", "prefix_shared", tok.pad_token_id)
    got = torch.autograd.grad(SequenceScorer(model, chunk_size=7)(batch.sequences).sum(), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_scorer_under_bf16_autocast_is_close_to_fp32(tiny):
    model, tok = tiny
    examples, _ = tokenize_records(_records(), tok)
    batch = collate_examples(examples, "pair", "packed", tok.pad_token_id)
    scorer = SequenceScorer(model)
    with torch.no_grad():
        exact = scorer(batch.sequences)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = scorer(batch.sequences)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, exact, rtol=2e-2, atol=0.5)


@pytest.mark.parametrize("chunked_head", [True, False])
@pytest.mark.parametrize("start", [0, 4])
def test_score_completions_equals_naive_per_sequence_and_per_token(tiny, chunked_head, start, monkeypatch):
    """The scorer of token lists (evaluation's and generation's) is SequenceScorer: the naive log_softmax sums
    and per-token values, in input order, whatever the batch size; an empty completion scores 0. Prompts that
    open alike (``start`` tokens) have that start packed once per batch, to the same values."""
    from preflab.models import packing
    from preflab.models.scoring import packs_rows, score_completions

    model, _ = tiny
    assert packs_rows(model)
    found, shares = packing.shared_prefix, []
    monkeypatch.setattr(packing, "shared_prefix", lambda *a: shares.append(found(*a)) or shares[-1])
    gen = torch.Generator().manual_seed(3)
    opening = torch.randint(5, 200, (start,), generator=gen).tolist()
    prompts = [opening + torch.randint(5, 200, (n,), generator=gen).tolist() for n in (3, 9, 1, 6, 4)]
    comps = [torch.randint(5, 200, (n,), generator=gen).tolist() for n in (5, 1, 7, 0, 2)]
    want, want_tok = [], []
    for p, c in zip(prompts, comps, strict=True):
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].double(), -1)
        want_tok.append([float(logp[len(p) - 1 + j, t]) for j, t in enumerate(c)])
        want.append(sum(want_tok[-1]))
    for batch_size in (1, 2, 8):
        got = score_completions(model, prompts, comps, batch_size=batch_size, chunked_head=chunked_head)
        assert got.tolist() == pytest.approx(want, abs=1e-4)
        assert got[3] == 0.0
    per_token = score_completions(model, prompts, comps, batch_size=2, per_token=True, chunked_head=chunked_head)
    assert [len(t) for t in per_token] == [len(c) for c in comps]
    for got_t, want_t in zip(per_token, want_tok, strict=True):
        assert got_t == pytest.approx(want_t, abs=1e-4)
    assert max(shares) == start  # batches of two or more rows shared their start
