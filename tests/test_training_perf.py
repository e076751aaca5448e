"""Performance choices of the training path keep its numbers: fused AdamW, reference caches scored in the
batches training starts with (step 1 is exactly log 2 under bf16)."""

from __future__ import annotations

import math

import pytest
import torch

from preflab.data import PreferencePair
from preflab.models import tiny_model
from preflab.training import read_metrics, train
from preflab.training.optim import build_optimizer, fused_adamw_supported
from preflab.training.schedule import OfflineSchedule
from test_training_utils import make_cfg


def _varied_pairs(n: int) -> list[PreferencePair]:
    """Pairs whose prompts and completions differ in length, so batches of different rows pad differently."""
    return [
        PreferencePair("Say " + "word " * (1 + i % 5), "yes " * (1 + (3 * i) % 7), "no" * (1 + i % 4)) for i in range(n)
    ]


def test_fused_adamw_matches_the_for_loop_update():
    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    cfg = make_cfg("unused", "train.lr=0.1", "train.weight_decay=0.01").train
    fused = build_optimizer(a, cfg)
    assert fused.defaults["fused"] and fused_adamw_supported(list(a.parameters()))
    plain = torch.optim.AdamW(
        [{"params": [b.weight], "weight_decay": 0.01}, {"params": [b.bias], "weight_decay": 0.0}], lr=0.1
    )
    x = torch.randn(5, 4)
    for _ in range(3):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)
    assert not fused_adamw_supported([torch.nn.Parameter(torch.zeros(2, dtype=torch.long), requires_grad=False)])


def test_first_epoch_is_the_batches_training_draws_and_leaves_the_position():
    model, tok = tiny_model()
    from preflab.data.tokenize import tokenize_records

    examples, _ = tokenize_records(_varied_pairs(7), tok)
    sched = OfflineSchedule(examples, "pair", 3, seed=5, layout="prefix_shared", pad_id=tok.pad_token_id)
    first = list(sched.first_epoch())
    assert len(first) == 3 and sched.position == 0  # ceil(7 / 3) batches; the last one straddles into epoch 2
    for expected in first:
        got = sched.next_batch()
        assert torch.equal(got.index, expected.index)
        assert torch.equal(got.sequences.input_ids, expected.sequences.input_ids)
    assert sorted({int(i) for b in first for i in b.index}) == list(range(7))


@pytest.mark.parametrize("layout", ["padded", "prefix_shared"])
def test_cached_reference_gives_exactly_log2_at_step_one_in_bf16(tmp_path, layout):
    model, tok = tiny_model()
    cfg = make_cfg(
        tmp_path,
        "objective.name=dpo",
        "train.batch_size=3",
        "train.max_steps=1",
        "train.bf16=true",
        f"train.layout={layout}",
        "reference.mode=cached",
        "train.save_final=false",
    )
    train(cfg, records=_varied_pairs(9), model=model, tokenizer=tok)
    (step1,) = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert step1["loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert step1["logratios/chosen"] == 0.0 and step1["logratios/rejected"] == 0.0


@pytest.mark.parametrize("lora_dropout", [0.0, 0.1])
def test_cached_lora_reference_is_scored_through_the_policys_own_kernels(tmp_path, monkeypatch, lora_dropout):
    # fresh adapters (B = 0) add nothing: the cache is scored with them on, i.e. by the first step's kernels
    import preflab.training.references as refs

    used = []
    for name in ("FrozenCopyReference", "AdapterDisabledReference"):
        cls = getattr(refs, name)
        monkeypatch.setattr(refs, name, lambda *a, _cls=cls, **k: used.append(_cls.__name__) or _cls(*a, **k))
    model, tok = tiny_model()
    cfg = make_cfg(
        tmp_path,
        "objective.name=dpo",
        "train.batch_size=3",
        "train.max_steps=1",
        "train.bf16=true",
        "reference.mode=cached",
        "lora.enabled=true",
        f"lora.dropout={lora_dropout}",
        "train.save_final=false",
    )
    train(cfg, records=_varied_pairs(6), model=model, tokenizer=tok)
    assert used == ["FrozenCopyReference"]
    if lora_dropout == 0.0:  # with dropout on, the policy's step-1 forward drops inputs: not π_ref's forward
        (step1,) = read_metrics(tmp_path / "metrics.jsonl", "train")
        assert step1["loss"] == pytest.approx(math.log(2), abs=1e-7)


def test_identity_adapters_and_dropout_are_detected():
    from preflab.models.policy import adapters_are_identity, apply_lora, has_active_dropout

    model, _ = tiny_model()
    assert not has_active_dropout(model)
    model.config.attention_dropout = 0.1
    assert has_active_dropout(model)
    model.config.attention_dropout = 0.0
    lora = apply_lora(model, r=2, dropout=0.0)
    assert adapters_are_identity(lora) and not has_active_dropout(lora)
    assert has_active_dropout(apply_lora(tiny_model()[0], r=2, dropout=0.1))
    layer = next(m for m in lora.modules() if hasattr(m, "lora_B") and len(m.lora_B))
    with torch.no_grad():
        next(iter(layer.lora_B.values())).weight[0, 0] = 1e-3  # a trained adapter: the base is π_ref
    assert not adapters_are_identity(lora)


def test_training_graph_reference_matches_the_inference_graph_and_keeps_the_mode():
    from preflab.data.collate import collate_examples
    from preflab.data.tokenize import tokenize_records
    from preflab.models.policy import FrozenCopyReference

    model, tok = tiny_model()
    examples, _ = tokenize_records(_varied_pairs(4), tok)
    batch = collate_examples(examples, "pair", "prefix_shared", tok.pad_token_id)
    model.train()
    inference = FrozenCopyReference(model, copy=False).logprobs(batch)
    training = FrozenCopyReference(model, copy=False, training_graph=True).logprobs(batch)
    assert torch.equal(training, inference) and not training.requires_grad and model.training
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="training_graph"):
        FrozenCopyReference(model, training_graph=True)


@pytest.mark.slow
def test_compiled_lora_run_scores_its_cache_with_the_graphs_training_runs(tmp_path, monkeypatch):
    # the reference cache runs the training graphs: step 1 is exactly log 2 and training compiles nothing new
    import torch._dynamo
    from torch._dynamo.utils import counters

    import preflab.training.references as refs

    torch._dynamo.reset()
    counters.clear()
    graphs_after_cache = []
    real = refs.build_reference_table

    def counted(*args, **kwargs):
        table = real(*args, **kwargs)
        graphs_after_cache.append(counters["stats"]["unique_graphs"])
        return table

    monkeypatch.setattr(refs, "build_reference_table", counted)
    model, tok = tiny_model()
    cfg = make_cfg(
        tmp_path,
        "objective.name=dpo",
        "train.batch_size=3",
        "train.max_steps=2",
        "train.bf16=true",
        "reference.mode=cached",
        "lora.enabled=true",
        "lora.dropout=0.0",
        "train.compile=true",
        "train.save_final=false",
    )
    train(cfg, records=_varied_pairs(6), model=model, tokenizer=tok)
    (step1, _) = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert step1["loss"] == pytest.approx(math.log(2), abs=1e-7)
    # block 0's input (a frozen embedding's output) is marked to require grad like the others': one graph for
    # every block, compiled by the cache pass
    assert graphs_after_cache[0] == 1 and counters["stats"]["unique_graphs"] == 1
    from preflab.models.compile import is_compiled

    assert not is_compiled(model)  # train() hands the model back eager, without the input hook
    assert not model.get_input_embeddings()._forward_hooks


def test_prefix_shared_layout_is_exact_under_eager_attention():
    # transformers adds a 4D mask to eager attention's scores: a boolean one must become 0 / −inf first
    from preflab.data.collate import collate_examples
    from preflab.data.tokenize import tokenize_records
    from preflab.models.logprobs import SequenceScorer, attention_mask_for

    model, tok = tiny_model()
    model.set_attn_implementation("eager")
    examples, _ = tokenize_records(_varied_pairs(4), tok)
    scorer = SequenceScorer(model, chunk_size=3)
    with torch.no_grad():
        padded = scorer(collate_examples(examples, "pair", "padded", tok.pad_token_id).sequences)
        shared = collate_examples(examples, "pair", "prefix_shared", tok.pad_token_id).sequences
        torch.testing.assert_close(scorer(shared), padded, rtol=0, atol=2e-5)
    additive = attention_mask_for(model, shared.attention_mask)
    assert additive.dtype == torch.float32 and set(additive.unique().tolist()) == {0.0, torch.finfo(torch.float32).min}
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="prefix_shared"):
        attention_mask_for(model, shared.attention_mask)


@pytest.mark.slow
def test_compiled_blocks_train_like_eager(tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters

    from preflab.models.compile import is_compiled, repeated_blocks

    runs = {}
    for name, extra in (("eager", ()), ("compiled", ("train.compile=true",))):
        model, tok = tiny_model()
        cfg = make_cfg(
            tmp_path / name,
            "objective.name=dpo",
            "train.batch_size=3",
            "train.max_steps=3",
            "train.lr=3e-3",
            "reference.mode=frozen_copy",
            "train.save_final=false",
            *extra,
        )
        torch._dynamo.reset()
        counters.clear()
        train(cfg, records=_varied_pairs(9), model=model, tokenizer=tok)
        runs[name] = [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl", "train")]
        assert (counters["stats"]["unique_graphs"] > 0) == (name == "compiled")  # dynamo compiled the blocks
        assert not is_compiled(model) and len(repeated_blocks(model)) == 2  # ... and train() hands them back eager
    assert runs["compiled"] == pytest.approx(runs["eager"], abs=1e-4)
    assert runs["eager"][0] == pytest.approx(math.log(2), abs=1e-6) and runs["eager"][-1] < runs["eager"][0]


def test_frozen_copy_of_a_compiled_policy_scores_its_own_weights():
    from preflab.models.compile import compile_blocks, is_compiled
    from preflab.models.policy import FrozenCopyReference

    model, _ = tiny_model()
    compile_blocks(model)
    ref = FrozenCopyReference(model)
    copy_blocks = ref.scorer.model.model.layers
    assert is_compiled(ref.scorer.model)
    # each copied block's compiled callable is bound to the copy, not to the policy's block
    for mine, theirs in zip(copy_blocks, model.model.layers, strict=True):
        assert mine._compiled_call_impl is not theirs._compiled_call_impl


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_token_logprobs_gradient_equals_log_softmax_and_keeps_its_input(dtype):
    from preflab.models.logprobs import token_logprobs

    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(11, 29, generator=gen, dtype=torch.float64) * 3).to(dtype).requires_grad_()
    before = logits.detach().clone()
    targets = torch.randint(0, 29, (11,), generator=gen)
    upstream = torch.randn(11, generator=gen, dtype=torch.float64)
    naive = torch.log_softmax(logits.double(), -1).gather(-1, targets[:, None]).squeeze(-1)
    (want,) = torch.autograd.grad((naive * upstream).sum(), logits)
    out = token_logprobs(logits, targets, chunk_size=4)
    (got,) = torch.autograd.grad((out * upstream.float()).sum(), logits)
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)
    assert got.dtype == dtype and torch.equal(logits.detach(), before)


def test_block_inputs_are_marked_only_for_a_frozen_embedding_with_training_elsewhere():
    from preflab.models.compile import align_block_inputs

    model, _ = tiny_model()
    assert align_block_inputs(model) is None  # full fine-tuning: the embedding output already requires grad
    model.get_input_embeddings().weight.requires_grad_(False)
    handle = align_block_inputs(model)
    ids = torch.tensor([[1, 2, 3]])
    assert model.get_input_embeddings()(ids).requires_grad
    with torch.no_grad():
        assert not model.get_input_embeddings()(ids).requires_grad
    handle.remove()
    for p in model.parameters():
        p.requires_grad_(False)
    assert align_block_inputs(model) is None  # nothing trains: nothing to align


def test_compile_blocks_sets_the_activation_memory_budget(monkeypatch):
    import torch._functorch.config as functorch_config

    from preflab.models.compile import compile_blocks, uncompile

    monkeypatch.setattr(functorch_config, "activation_memory_budget", 1.0)  # restored after the test
    model, _ = tiny_model()
    assert compile_blocks(model, memory_budget=0.7) == 2  # lazy: nothing compiles before a forward
    assert functorch_config.activation_memory_budget == 0.7
    uncompile(model)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="memory_budget"):
            compile_blocks(model, memory_budget=bad)


@pytest.mark.slow
@pytest.mark.parametrize("must_save", [True, False])
def test_compiled_backward_keeps_the_flash_attention_forward(monkeypatch, must_save):
    # under a memory budget the partitioner recomputes in backward what its op lists do not call expensive; the
    # CPU flash kernel is not on them, so without the joint pass every layer's backward re-ran it
    import torch._dynamo
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    import preflab.models.compile as compile_mod
    from preflab.data.collate import collate_examples
    from preflab.data.tokenize import tokenize_records
    from preflab.models.logprobs import SequenceScorer

    if not must_save:
        monkeypatch.setattr(compile_mod, "MUST_SAVE", ())
    model, tok = tiny_model()
    layers = len(compile_mod.repeated_blocks(model))
    examples, _ = tokenize_records(_varied_pairs(4), tok)
    seqs = collate_examples(examples, "pair", "prefix_shared", tok.pad_token_id).sequences
    scorer = SequenceScorer(model, chunk_size=64)
    # the configs are restored after the test; no cached graph may hide the partition
    with (
        functorch_config.patch(activation_memory_budget=1.0),
        inductor_config.patch(joint_custom_pre_pass=None, force_disable_caches=True),
    ):
        torch._dynamo.reset()
        compile_mod.compile_blocks(model, memory_budget=0.5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scorer(seqs).sum().backward()  # compiles
            model.zero_grad(set_to_none=True)
            with torch.profiler.profile() as prof:
                scorer(seqs).sum().backward()
        compile_mod.uncompile(model)
        torch._dynamo.reset()
    calls = sum(e.count for e in prof.key_averages() if e.key == "aten::_scaled_dot_product_flash_attention_for_cpu")
    assert calls == (layers if must_save else 2 * layers)
