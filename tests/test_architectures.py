"""The CPU scoring fast path (flash forward + matmul backward, row packing of prefix-shared batches, the
chunked lm-head) on decoder families other than Llama: log-probs and gradients equal transformers' own
forward (sdpa, full logits) on every layout. Each family differs from Llama in a way the fast path must
respect: q/k/v biases (Qwen2), q/k norms (Qwen3, OLMo-2), a sliding window (Mistral, Gemma 3), scaled
embeddings and a head_dim ≠ hidden/heads (Gemma), a fused qkv projection (Phi-3), partial rotary and a
parallel residual (GPT-NeoX), a logit scale (Cohere, Granite), interleaved sliding layers (Gemma 3)."""

from __future__ import annotations

import math

import pytest
import torch

import preflab.models.attention as attention
from preflab.data import PreferencePair
from preflab.data.collate import LAYOUTS, collate_examples
from preflab.data.tokenize import tokenize_records
from preflab.models.logprobs import SequenceScorer, naive_sequence_logprobs

COMMON = {
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}
FAMILIES = {
    "qwen2": ("Qwen2", {}),
    "qwen3": ("Qwen3", {"head_dim": 16}),
    "mistral": ("Mistral", {"sliding_window": 6}),
    "gemma": ("Gemma", {"head_dim": 24}),
    "gemma3": (
        "Gemma3Text",
        {
            "head_dim": 16,
            "sliding_window": 6,
            "layer_types": ["sliding_attention", "full_attention"],
            "attn_logit_softcapping": None,
            "final_logit_softcapping": None,
        },
    ),
    "phi3": ("Phi3", {"pad_token_id": 0}),
    "olmo2": ("Olmo2", {}),
    "gpt_neox": ("GPTNeoX", {"rotary_pct": 0.5, "use_parallel_residual": True}),
    "cohere": ("Cohere", {"logit_scale": 0.5}),
    "granite": (
        "Granite",
        {"logits_scaling": 2.0, "embedding_multiplier": 3.0, "residual_multiplier": 0.5, "attention_multiplier": 0.2},
    ),
}


def _model(family: str, tok, impl: str = "sdpa"):
    import transformers

    name, extra = FAMILIES[family]
    config = getattr(transformers, f"{name}Config")(vocab_size=len(tok), **{**COMMON, **extra})
    name = name.removesuffix("Text")  # Gemma3ForCausalLM is the text-only model of a Gemma3TextConfig
    config._attn_implementation = impl
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = getattr(transformers, f"{name}ForCausalLM")(config)
        with torch.no_grad():  # random, not zero, biases and norms, so that a dropped one shows
            for n, p in model.named_parameters():
                if "bias" in n or "norm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
    return model.train()


RECORDS = [
    PreferencePair("What is two plus two, in words?", "four", "five, I think; or six"),
    PreferencePair("Say hi", "hi there, friend", "no"),
]


def _batch(tok, layout):
    examples, _ = tokenize_records(RECORDS, tok)
    return collate_examples(examples, "pair", layout, tok.pad_token_id).sequences


def _scores_and_grads(model, scorer, batch):
    params = [p for p in model.parameters() if p.requires_grad]
    out = scorer(batch)
    return out.detach(), torch.autograd.grad(out.sum(), params, allow_unused=True)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fast_scoring_equals_transformers_forward(tiny, family, monkeypatch):
    _, tok = tiny
    model = _model(family, tok)
    calls = []
    apply = attention.FlashAttention.apply
    monkeypatch.setattr(attention.FlashAttention, "apply", lambda *a: calls.append(1) or apply(*a))
    blocks = []  # a layer attended by prompt and completion blocks runs the kernel twice
    attend = attention.Segments.attend
    monkeypatch.setattr(attention.Segments, "attend", lambda *a: blocks.append(1) or attend(*a))
    for layout in LAYOUTS:
        batch = _batch(tok, layout)
        fast, fast_grads = _scores_and_grads(model, SequenceScorer(model, chunk_size=5), batch)
        with monkeypatch.context() as m:
            m.setattr(attention, "BUDGET_BYTES", 0)  # transformers' sdpa, the full logits
            plain, plain_grads = _scores_and_grads(model, SequenceScorer(model, chunked_head=False), batch)
        torch.testing.assert_close(fast, plain, rtol=0, atol=5e-5)
        for a, b in zip(fast_grads, plain_grads, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
    assert len(calls) - len(blocks) == len(LAYOUTS) * model.config.num_hidden_layers  # the fast path, every layer


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["mistral", "gemma3", "phi3"])
def test_every_layout_equals_a_plain_forward_of_each_sequence(tiny, family, impl):
    """Against ground truth independent of preflab's masks: each sequence alone, unpadded, full log-softmax.
    The sliding-window families' windows (6 positions) are far shorter than these rows."""
    _, tok = tiny
    model = _model(family, tok, impl).eval()
    want = []
    examples = tokenize_records(RECORDS, tok)[0]
    for k in range(2):  # sequence k·G + g is completion k of group g: the chosen ones first
        for ex in examples:
            ids = torch.tensor([ex.prompt_ids + ex.completions[k]])
            mask = torch.zeros_like(ids)
            mask[0, len(ex.prompt_ids) :] = 1
            with torch.no_grad():
                want.append(naive_sequence_logprobs(model, ids, mask).item())
    for layout in LAYOUTS:
        with torch.no_grad():
            fast = SequenceScorer(model, chunk_size=5)(_batch(tok, layout))
        torch.testing.assert_close(fast, torch.tensor(want), rtol=0, atol=5e-5)


def test_layer_masks_narrow_sliding_layers_by_position_distance():
    from types import SimpleNamespace

    from preflab.models.logprobs import layer_masks

    # one prefix-shared row: prompt of 3 (positions 0-2), completions of 2 at positions 3-4 each
    positions = torch.tensor([[0, 1, 2, 3, 4, 3, 4]])
    mask = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0, 1, 0],
            [1, 1, 1, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )[None, None]
    assert layer_masks(SimpleNamespace(), mask, positions) is mask
    assert layer_masks(SimpleNamespace(sliding_window=None, layer_types=["full_attention"]), mask, positions) is mask
    windowed = layer_masks(SimpleNamespace(sliding_window=3), mask, positions)
    want = mask.clone()
    want[0, 0, 3, 0] = want[0, 0, 4, :2] = want[0, 0, 5, 0] = want[0, 0, 6, :2] = False  # position p sees p-2..p
    assert torch.equal(windowed, want)
    both = layer_masks(
        SimpleNamespace(sliding_window=3, layer_types=["sliding_attention", "full_attention"]), mask, positions
    )
    assert both.keys() == {"full_attention", "sliding_attention"}
    assert both["full_attention"] is mask and torch.equal(both["sliding_attention"], want)
    with pytest.raises(ValueError, match="chunked_attention"):
        layer_masks(
            SimpleNamespace(sliding_window=3, layer_types=["chunked_attention"], model_type="llama4"), mask, positions
        )


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma3", "phi3", "qwen2"])
def test_fast_training_settings_train_like_the_plain_ones(tmp_path, tiny, family):
    """The bench's settings (prefix_shared rows, cached reference, regional compile) against padded rows and a
    frozen reference model, LoRA on every linear layer, fp32: the same DPO losses step by step."""
    import torch._dynamo

    from preflab.training import read_metrics, train
    from test_training_perf import _varied_pairs
    from test_training_utils import make_cfg

    _, tok = tiny
    runs = {}
    for name, extra in (
        ("plain", ("train.layout=padded", "reference.mode=frozen_copy")),
        ("fast", ("train.layout=prefix_shared", "reference.mode=cached", "train.compile=true")),
    ):
        torch._dynamo.reset()
        cfg = make_cfg(
            tmp_path / name,
            "objective.name=dpo",
            "train.batch_size=3",
            "train.max_steps=3",
            "train.lr=3e-3",
            "lora.enabled=true",
            "lora.dropout=0.0",
            "train.save_final=false",
            *extra,
        )
        train(cfg, records=_varied_pairs(9), model=_model(family, tok), tokenizer=tok)
        runs[name] = [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl", "train")]
    assert runs["fast"] == pytest.approx(runs["plain"], abs=1e-4)
    assert runs["plain"][0] == pytest.approx(math.log(2), abs=1e-6) and runs["plain"][-1] < runs["plain"][0]


@pytest.mark.parametrize("family", ["mistral", "gemma3", "qwen3", "gpt_neox"])
def test_cached_greedy_decoding_equals_recomputing_each_row_alone(tiny, family):
    """The sampler's KV-cached, left-padded, compacting loop against a cache-free greedy loop per prompt: the
    windows (6) are shorter than the prompts, so a cache that kept or dropped the wrong keys would show."""
    from preflab.generation.decode import decode
    from preflab.generation.sampler import _encode_left, render_prompts

    _, tok = tiny
    model = _model(family, tok).eval()
    prompts = ["hi", "tell me a story about a cat", "a much longer prompt with many more words in it"]
    enc = _encode_left(tok, render_prompts(tok, prompts), model.device)
    new = 10
    with torch.no_grad():
        ours = decode(
            model,
            enc["input_ids"],
            enc["attention_mask"],
            max_new_tokens=new,
            stop_ids=[-1],
            pad_id=tok.pad_token_id,
            temperature=0,
        )
        for row, ids in enumerate(enc["input_ids"]):
            seq = ids[enc["attention_mask"][row].bool()].unsqueeze(0)
            for t in range(new):
                nxt = model(input_ids=seq, use_cache=False).logits[0, -1].argmax()
                assert int(ours[row, t]) == int(nxt), (row, t)
                seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
