"""Reference modes agree with each other; bf16 autocast keeps fp32 master weights; memory options change
nothing numerically; the final LoRA adapter can be saved unmerged."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from preflab.models import tiny_model
from preflab.training import read_metrics, train
from test_training_utils import make_cfg, max_abs_diff, state, synthetic_pairs

COMMON = ("objective.name=dpo", "train.batch_size=2", "train.max_steps=3", "train.lr=3e-3", "train.save_final=false")


def _losses(out, *extra, records=None, eval_records=None):
    model, tok = tiny_model()
    result = train(
        make_cfg(out, *COMMON, *extra),
        records=records or synthetic_pairs(4),
        eval_records=eval_records,
        model=model,
        tokenizer=tok,
    )
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl", "train")], model, result


def test_cached_reference_equals_frozen_copy(tmp_path):
    records = synthetic_pairs(4)
    frozen, m1, r1 = _losses(
        tmp_path / "frozen", "reference.mode=frozen_copy", records=records, eval_records=records[:3]
    )
    cached, m2, r2 = _losses(tmp_path / "cached", "reference.mode=cached", records=records, eval_records=records[:3])
    assert cached == pytest.approx(frozen, abs=1e-6)
    assert max_abs_diff(state(m1), state(m2)) < 1e-6
    assert r2.eval_metrics["loss"] == pytest.approx(r1.eval_metrics["loss"], abs=1e-6)
    cache = tmp_path / "cached" / "reference_logprobs.safetensors"
    with safe_open(str(cache), "pt") as f:
        table = f.get_tensor("table")
    assert table.shape == (7, 2) and torch.isfinite(table).all()  # 4 train + 3 eval rows, chosen / rejected


def test_cached_reference_equals_adapters_disabled_with_lora(tmp_path):
    lora = ("lora.enabled=true", "lora.r=4", "lora.dropout=0.0")
    disabled, *_ = _losses(tmp_path / "a", *lora, "reference.mode=adapters_disabled")
    cached, *_ = _losses(tmp_path / "b", *lora, "reference.mode=cached")
    assert cached == pytest.approx(disabled, abs=1e-6)


@pytest.mark.parametrize(
    "option",
    [
        "train.gradient_checkpointing=true",
        "train.layout=packed",
        "train.layout=prefix_shared",
        "train.chunked_lm_head=false",
    ],
)
def test_memory_and_layout_options_do_not_change_the_numbers(tmp_path, option):
    base, m1, _ = _losses(tmp_path / "base")
    other, m2, _ = _losses(tmp_path / "other", option)
    assert other == pytest.approx(base, abs=1e-5)
    # float sums run in another order; Adam turns near-zero gradients into ±lr steps, so allow 3% of a step
    assert max_abs_diff(state(m1), state(m2)) < 1e-4


def test_bf16_autocast_keeps_fp32_master_weights(tmp_path):
    losses, model, _ = _losses(tmp_path, "train.bf16=true")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1, even in bf16
    assert losses[-1] < losses[0]


def test_unmerged_lora_adapter_is_saved(tmp_path, tiny_dir):
    from preflab.data import save_records

    data = save_records(synthetic_pairs(4), tmp_path / "prefs.jsonl")
    cfg = make_cfg(
        tmp_path / "run",
        *COMMON[:-1],
        "train.max_steps=1",
        "lora.enabled=true",
        "lora.r=2",
        "train.merge_lora=false",
        f"model.name_or_path={tiny_dir}",
        f"data.path={data}",
    )
    result = train(cfg)
    names = sorted(p.name for p in result.final_model_dir.iterdir())
    assert "adapter_config.json" in names and "adapter_model.safetensors" in names
    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(result.final_model_dir)
    assert any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize(
    "mode",
    [("lora.enabled=true", "lora.r=4", "lora.dropout=0.0", "reference.mode=cached"), ("reference.mode=frozen_copy",)],
)
def test_frozen_weight_casts_change_no_number_and_are_released(tmp_path, monkeypatch, mode):
    import preflab.training.build as build
    from preflab.models.casts import FrozenCasts

    made = []

    class Recording(FrozenCasts):
        def __init__(self, model, *a, **k):
            super().__init__(model, *a, **k)
            made.append((self, len(self.modules)))

    class Off:
        def __init__(self, model, *a, **k):
            self.modules = []

        def release(self):
            pass

    monkeypatch.setattr(build, "FrozenCasts", Recording)
    cast, model, _ = _losses(tmp_path / "cast", "train.bf16=true", *mode)
    assert made and sum(n for _, n in made) > 0  # LoRA's base / the frozen copy's layers were cast
    assert all(c.modules == [] for c, _ in made)  # released when train() returned
    assert not any("forward" in vars(m) for m in model.modules())
    monkeypatch.setattr(build, "FrozenCasts", Off)
    plain, _, _ = _losses(tmp_path / "plain", "train.bf16=true", *mode)
    assert cast == plain  # bitwise: the copies are what autocast casts
    assert cast[0] == pytest.approx(0.6931, abs=1e-3)
