"""CPU scoring forwards run the flash kernel forward with a matmul backward for short rows: the numbers of
transformers' sdpa, in grad and no-grad mode alike (so a cached reference equals the policy it was computed from)."""

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
def test_scoring_attention_equals_sdpa_in_value_and_gradient(tiny, layout, monkeypatch):
    model, tok = tiny
    assert model.config._attn_implementation == "sdpa"
    batch = _batch(tok, layout)
    params = [p for p in model.parameters() if p.requires_grad]
    scorer = SequenceScorer(model, chunk_size=7)
    assert attention.prefers_decomposed(model.config, batch.input_ids)
    calls, packed = [], []
    monkeypatch.setattr(attention.FlashAttention, "apply", _counting(attention.FlashAttention.apply, calls))
    monkeypatch.setattr(attention.RowPacking, "of", _counting(attention.RowPacking.of, packed))
    fast = scorer(batch)
    fast_grads = torch.autograd.grad(fast.sum(), params)
    assert len(calls) == model.config.num_hidden_layers  # every layer ran it
    assert len(packed) == (layout == "prefix_shared")  # its rows have padding: the decoder reads them packed
    monkeypatch.setattr(attention, "BUDGET_BYTES", 0)  # nothing fits: transformers' own sdpa
    assert not attention.prefers_decomposed(model.config, batch.input_ids)
    plain = scorer(batch)
    plain_grads = torch.autograd.grad(plain.sum(), params)
    assert len(calls) == model.config.num_hidden_layers
    torch.testing.assert_close(fast, plain, rtol=0, atol=2e-5)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _counting(fn, calls):
    def wrapped(*args):
        calls.append(1)
        return fn(*args)

    return wrapped


def test_row_packing_round_trips_and_its_gradients_are_indexings():
    mask = _mask(rows=2, length=9, prompt=3)
    mask[1, 0, 6:] = torch.eye(9, dtype=torch.bool)[6:]  # row 1: three padding slots at the end
    packing = attention.RowPacking.of(mask)
    n = packing.tokens.numel()
    assert n == 2 * 9 - 3 - 1  # row 0's last query is padding too
    x = torch.randn(1, 3, n, 4, dtype=torch.float64, requires_grad=True)
    rows = packing.to_rows(x)
    assert rows.shape == (2, 3, 9, 4)
    real = packing.slots < n
    assert torch.equal(rows.transpose(1, 2)[~real], torch.zeros(int((~real).sum()), 3, 4, dtype=torch.float64))
    back = packing.to_packed(rows)
    assert torch.equal(back, x.transpose(1, 2))
    torch.autograd.gradcheck(lambda t: packing.to_rows(t), (x,))
    y = torch.randn(2, 3, 9, 4, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: packing.to_packed(t), (y,))


def test_a_shared_start_is_one_packed_token_whose_gradient_sums_the_rows():
    from preflab.data.collate import collate_prefix_shared

    batch = collate_prefix_shared(_rollout_groups(start=3), pad_id=0)
    packing = attention.RowPacking.of(batch.attention_mask, batch.input_ids, batch.position_ids)
    n = packing.tokens.numel()
    assert packing.shared == 3 and n == batch.num_tokens - 3
    assert torch.equal(packing.slots[1, :3], packing.slots[0, :3])
    x = torch.randn(1, 2, n, 4, dtype=torch.float64, requires_grad=True)
    rows = packing.to_rows(x)
    assert torch.equal(rows[1, :, :3], rows[0, :, :3])  # every row reads the one copy
    assert torch.equal(packing.to_packed(rows), x.transpose(1, 2))
    (grad,) = torch.autograd.grad(rows.sum(), x)
    assert torch.equal(grad[0, :, :3], torch.full((2, 3, 4), 2.0, dtype=torch.float64))  # both rows' slots
    assert torch.equal(grad[0, :, 3:], torch.ones(2, n - 3, 4, dtype=torch.float64))
    torch.autograd.gradcheck(lambda t: packing.to_rows(t), (x,))
    y = torch.randn(rows.shape, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: packing.to_packed(t), (y,))
    (grad,) = torch.autograd.grad(packing.to_packed(y).sum(), y)
    assert grad[0, :, :3].eq(1).all() and grad[1, :, :3].eq(0).all()  # a shared token is read from row 0 only


def test_packing_waits_for_an_attention_without_dropout(tiny):
    model, tok = tiny
    batch = _batch(tok, "prefix_shared")
    scorer = SequenceScorer(model)
    assert scorer._packing(batch) is not None
    model.config.attention_dropout = 0.1
    try:
        model.train()
        assert scorer._packing(batch) is None
        model.eval()
        assert scorer._packing(batch) is not None
    finally:
        model.config.attention_dropout = 0.0
    assert scorer._packing(_batch(tok, "padded")) is None


def test_rows_share_a_prompt_start_only_without_dropout(tiny):
    model, tok = tiny
    batch = _batch(tok, "prefix_shared")  # both prompts open with the chat template's system turn
    scorer = SequenceScorer(model)
    shared = scorer._packing(batch).shared
    ids = batch.input_ids
    assert shared > 0 and torch.equal(ids[0, :shared], ids[1, :shared]) and ids[0, shared] != ids[1, shared]
    model.train()
    try:
        assert scorer._packing(batch).shared == shared  # the tiny model drops nothing
        model.model.layers[0].mlp.act_fn = torch.nn.Sequential(model.model.layers[0].mlp.act_fn, torch.nn.Dropout(0.1))
        assert scorer._packing(batch).shared == 0  # one dropout mask would stand for every row's copy
    finally:
        model.model.layers[0].mlp.act_fn = model.model.layers[0].mlp.act_fn[0]
        model.eval()


def test_shared_prefix_is_the_run_every_row_computes_alike():
    from preflab.data.collate import collate_prefix_shared
    from preflab.models.packing import shared_prefix

    start = [7, 8, 9, 10]
    groups = [(start + [11, 12], [[3, 4], [5]]), (start[:3] + [20, 21, 22], [[6], [2, 2]])]
    batch = collate_prefix_shared(groups, pad_id=0)
    assert shared_prefix(batch.attention_mask, batch.input_ids, batch.position_ids) == 3
    single = collate_prefix_shared(groups[:1], pad_id=0)
    assert shared_prefix(single.attention_mask, single.input_ids, single.position_ids) == 0
    moved = batch.position_ids.clone()
    moved[1, 1:] += 1  # row 1 counts its positions differently from slot 1 on
    assert shared_prefix(batch.attention_mask, batch.input_ids, moved) == 1
    blind = batch.attention_mask.clone()
    blind[1, 0, 2, 0] = False  # row 1's slot 2 does not see slot 0
    assert shared_prefix(blind, batch.input_ids, batch.position_ids) == 2
    whole = collate_prefix_shared([(start, [[1], [2, 3]]), (start, [[4, 5], [6]])], pad_id=0)
    assert shared_prefix(whole.attention_mask, whole.input_ids, whole.position_ids) == 4  # the whole prompt


def _mask(rows, length, prompt):
    """A prefix-sharing mask: [prompt, c1, c2]; the last query of row 0 is padding that sees only itself."""
    seg = torch.zeros(rows, length, dtype=torch.long)
    half = prompt + (length - prompt) // 2
    seg[:, prompt:half], seg[:, half:] = 1, 2
    visible = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    mask = torch.ones(length, length, dtype=torch.bool).tril() & visible
    mask[0, -1, :] = False
    mask[0, -1, -1] = True
    return mask[:, None]


@pytest.mark.parametrize("masked", ["prefix_shared", "causal", "none"])
def test_flash_attention_value_and_gradients_equal_float64_autograd(masked):
    gen = torch.Generator().manual_seed(0)
    rows, heads, length, dim = 2, 3, 11, 8
    q, k, v, g = (torch.randn(rows, heads, length, dim, generator=gen) for _ in range(4))
    mask = _mask(rows, length, prompt=4) if masked == "prefix_shared" else None
    causal = masked == "causal"
    scale = 0.3
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = attention.FlashAttention.apply(*leaves, mask, scale, causal)
    out.backward(g)
    exact_leaves = [x.double().requires_grad_() for x in (q, k, v)]
    exact = torch.nn.functional.scaled_dot_product_attention(
        *exact_leaves, attn_mask=mask, is_causal=causal, scale=scale
    )
    exact.backward(g.double())
    torch.testing.assert_close(out, exact.float(), rtol=1e-5, atol=1e-5)
    for mine, want in zip(leaves, exact_leaves, strict=True):
        torch.testing.assert_close(mine.grad, want.grad.float(), rtol=1e-4, atol=1e-5)


def test_calls_it_cannot_serve_go_to_transformers_sdpa(tiny, monkeypatch):
    model, _ = tiny
    module = model.model.layers[0].self_attn
    q = torch.randn(1, model.config.num_attention_heads, 5, module.head_dim)
    kv = torch.randn(1, model.config.num_key_value_heads, 5, module.head_dim)
    calls = []
    monkeypatch.setattr(attention.FlashAttention, "apply", _counting(attention.FlashAttention.apply, calls))
    float_mask = torch.zeros(1, 1, 5, 5)
    cached = torch.randn(1, model.config.num_key_value_heads, 7, module.head_dim)  # a KV cache: 5 queries, 7 keys
    for args, kwargs in [
        ((q, kv, kv, None), {"dropout": 0.1}),
        ((q, kv, kv, float_mask), {}),
        ((q, kv, kv, None), {"softcap": 30.0}),
        ((q, cached, cached, None), {}),
    ]:
        if "softcap" in kwargs:
            with pytest.raises(ValueError, match="softcap"):  # transformers' own answer
                attention.scoring_sdpa(module, *args, **kwargs)
            continue
        attention.scoring_sdpa(module, *args, **kwargs)
    assert calls == []
    out, _ = attention.scoring_sdpa(module, q, kv, kv, None)
    assert len(calls) == 1 and out.shape == (1, 5, model.config.num_attention_heads, module.head_dim)


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
    loss, _ = spec(
        PairInputs(policy_chosen=policy[:g], policy_rejected=policy[g:], ref_chosen=ref[:g], ref_rejected=ref[g:]),
        spec.make_params(beta=0.1),
    )
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)


def test_budget_counts_one_layers_heads(tiny, monkeypatch):
    model, _ = tiny
    cfg = model.config
    want = 16 * 3 * cfg.num_attention_heads * 50 * 50
    assert attention.backward_score_bytes(cfg, rows=3, length=50) == want
    ids = torch.zeros(3, 50, dtype=torch.long)
    assert attention.prefers_decomposed(cfg, ids)
    monkeypatch.setattr(attention, "BUDGET_BYTES", want - 1)
    assert not attention.prefers_decomposed(cfg, ids)
    assert not attention.prefers_decomposed(None, ids)


def test_the_sdpa_entry_is_restored(tiny):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model, _ = tiny
    before = ALL_ATTENTION_FUNCTIONS["sdpa"]
    with attention.scoring_attention(model.config, torch.zeros(2, 8, dtype=torch.long)) as used:
        assert used and ALL_ATTENTION_FUNCTIONS["sdpa"] is attention.scoring_sdpa
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before
    with pytest.raises(RuntimeError), attention.scoring_attention(model.config, torch.zeros(2, 8, dtype=torch.long)):
        raise RuntimeError("a failing forward")
    assert ALL_ATTENTION_FUNCTIONS["sdpa"] is before


def _rollout_groups(seed=0, prompts=(5, 3), completions=(9, 12, 4, 10), start=0):
    """Prompts of different lengths, each with completions of different lengths (a GRPO rollout's shape); with
    ``start``, every prompt opens with the same ``start`` tokens (a chat template's system turn)."""
    gen = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, 250, (n,), generator=gen).tolist()

    opening = ids(start)
    return [(opening + ids(p), [ids(c + i) for c in completions]) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("start", [0, 2])
def test_segments_give_the_rows_attention_in_value_and_gradient(start):
    from preflab.data.collate import collate_prefix_shared

    batch = collate_prefix_shared(_rollout_groups(start=start), pad_id=0)
    packing = attention.RowPacking.of(batch.attention_mask, batch.input_ids, batch.position_ids)
    seg = packing.segments
    assert seg is not None  # 2 rows of 5 + 43 / 3 + 47 tokens: 4,800 scores as rows, 1,066 as blocks
    n = packing.tokens.numel()
    assert packing.shared == start and n == batch.num_tokens - start  # a shared start is packed once
    assert seg.query_index.shape == (8, 13) and seg.prompt_index.shape == (2, 5 + start)
    gen = torch.Generator().manual_seed(1)
    heads, kv_heads, dim = 4, 2, 8
    q = torch.randn(1, heads, n, dim, generator=gen, requires_grad=True)
    k = torch.randn(1, kv_heads, n, dim, generator=gen, requires_grad=True)
    v = torch.randn(1, kv_heads, n, dim, generator=gen, requires_grad=True)
    out = seg.attend(q, k, v, groups=heads // kv_heads, scale=0.3)
    assert out.shape == (1, n, heads, dim)
    g = torch.randn(out.shape, generator=gen)
    grads = torch.autograd.grad((out * g).sum(), (q, k, v))

    # reference: the rows with their (R, 1, T, T) mask, dense softmax in float64
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    rows_q = packing.to_rows(q64)
    rows_k = packing.to_rows(k64).repeat_interleave(heads // kv_heads, 1)
    rows_v = packing.to_rows(v64).repeat_interleave(heads // kv_heads, 1)
    scores = (rows_q @ rows_k.transpose(-1, -2) * 0.3).masked_fill(~packing.mask, float("-inf"))
    ref = packing.to_packed(scores.softmax(-1) @ rows_v)
    ref_grads = torch.autograd.grad((ref * g.double()).sum(), (q64, k64, v64))
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-6)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=2e-5)


def test_segments_only_for_exact_prefix_sharing_that_is_smaller():
    from preflab.data.collate import collate_prefix_shared

    mask = collate_prefix_shared(_rollout_groups(), pad_id=0).attention_mask
    assert attention.RowPacking.of(mask).segments is not None
    leaky = mask.clone()
    leaky[0, 0, 20, 7] = True  # a token of completion 2 sees one of completion 1
    assert attention.RowPacking.of(leaky).segments is None
    # one completion per row (the row is a plain causal sequence): nothing to split
    single = collate_prefix_shared(_rollout_groups(completions=(9,)), pad_id=0).attention_mask
    assert attention.RowPacking.of(single).segments is None
    # a long prompt with short completions beside a short prompt with long ones: padded to the longest prompt
    # and the longest completion, the blocks (2·40² + 4·20·60 scores) outnumber the rows' (2·42²)
    groups = [([5] * 40, [[6], [7]]), ([5], [[8] * 20, [9] * 20])]
    uneven = collate_prefix_shared(groups, pad_id=0).attention_mask
    assert attention.RowPacking.of(uneven).segments is None
    # a long prompt with many completions: 10 % of the scores, but 16 copies of the prompt's keys (> 2x the rows')
    many = collate_prefix_shared([([5] * 300, [[6] * 20] * 16)], pad_id=0).attention_mask
    assert attention.RowPacking.of(many).segments is None
    fewer = collate_prefix_shared([([5] * 20, [[6] * 20] * 16)], pad_id=0).attention_mask
    assert attention.RowPacking.of(fewer).segments is not None  # 16·40 keys against the row's 340: under 2x


@pytest.mark.parametrize("start", [0, 2])
def test_scorer_on_rollout_rows_equals_with_and_without_segments_and_padded(tiny, monkeypatch, start):
    """Block attention, row attention, a shared prompt start packed once or per row, and the padded layout: the
    same log-probs and gradients."""
    from preflab.data.collate import collate_sequences
    from preflab.models import packing

    model, _ = tiny
    params = [p for p in model.parameters() if p.requires_grad]
    scorer = SequenceScorer(model, chunk_size=16)
    groups = _rollout_groups(seed=3, start=start)
    found = packing.shared_prefix
    shares = []
    monkeypatch.setattr(packing, "shared_prefix", lambda *a: shares.append(found(*a)) or shares[-1])

    def run(layout):
        tok, _ = scorer(collate_sequences(groups, layout, 0), per_token=True)
        return tok, torch.autograd.grad((tok * torch.linspace(-1, 1, tok.numel())).sum(), params)

    calls = []
    monkeypatch.setattr(attention.Segments, "attend", _counting(attention.Segments.attend, calls))
    fast, fast_grads = run("prefix_shared")
    assert len(calls) == model.config.num_hidden_layers  # every layer attended block by block
    assert shares == [start]
    others = []
    monkeypatch.setattr(packing, "shared_prefix", lambda *a: 0)
    others.append(run("prefix_shared"))  # blocks, the start computed in every row
    monkeypatch.setattr(attention.Segments, "of", classmethod(lambda cls, *a: None))
    others.append(run("prefix_shared"))  # rows, unshared
    monkeypatch.setattr(packing, "shared_prefix", lambda *a: shares.append(found(*a)) or shares[-1])
    others.append(run("prefix_shared"))  # rows, the start shared
    assert len(calls) == 2 * model.config.num_hidden_layers and shares == [start, start]
    others.append(run("padded"))
    for other, other_grads in others:
        torch.testing.assert_close(fast, other, rtol=0, atol=2e-5)
        for a, b in zip(fast_grads, other_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_shared_run_into_a_rows_first_completion_is_read_back_once(tiny):
    """Row 1's prompt is the start of row 0's and its first completion goes on as row 0's prompt does: the run the
    rows compute alike reaches into that completion, whose query gradients must still count once."""
    from preflab.data.collate import collate_sequences
    from preflab.models import packing

    model, _ = tiny
    params = [p for p in model.parameters() if p.requires_grad]
    scorer = SequenceScorer(model, chunk_size=16)
    gen = torch.Generator().manual_seed(7)

    def ids(n):
        return torch.randint(3, 250, (n,), generator=gen).tolist()

    opening, more = ids(2), ids(3)
    groups = [
        (opening + more, [ids(9), ids(10), ids(8), ids(10)]),
        (opening + more[:1], [more[1:] + ids(8), ids(10), ids(9), ids(7)]),
    ]
    batch = collate_sequences(groups, "prefix_shared", 0)
    assert packing.shared_prefix(batch.attention_mask, batch.input_ids, batch.position_ids) == 5

    def run(layout):
        tok, _ = scorer(collate_sequences(groups, layout, 0), per_token=True)
        return tok, torch.autograd.grad((tok * torch.linspace(-1, 1, tok.numel())).sum(), params)

    fast, fast_grads = run("prefix_shared")
    padded, padded_grads = run("padded")
    torch.testing.assert_close(fast, padded, rtol=0, atol=2e-5)
    for a, b in zip(fast_grads, padded_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    seg = packing.RowPacking.of(batch.attention_mask, batch.input_ids, batch.position_ids).segments
    assert seg is not None  # block attention: every packed token read back from exactly one block slot
    owned = seg.slot_token[seg.slot_token < seg.back.numel()]
    assert owned.numel() == seg.back.numel() == owned.unique().numel()
