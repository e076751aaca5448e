"""Checkpoints: a killed and resumed run ends with the same weights as an uninterrupted one; a non-finite
loss stops the run and leaves the last good checkpoint intact; old checkpoints are pruned."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest
import torch

from preflab.algorithms import ALGORITHMS
from preflab.errors import TrainingError
from preflab.models import tiny_model
from preflab.objectives import REGISTRY, register
from preflab.objectives.pairwise import DPOParams, dpo
from preflab.training import read_metrics, train
from preflab.training.checkpoint import latest_checkpoint, list_checkpoints
from test_training_utils import make_cfg, max_abs_diff, state, synthetic_pairs


class Killed(Exception):
    pass


def kill_at(step: int):
    def callback(s: int, _metrics: dict) -> None:
        if s == step:
            raise Killed(f"killed after step {s}")

    return callback


def _run(out, extra, records, *, callbacks=(), resume=False):
    cfg = make_cfg(
        out,
        "train.batch_size=2",
        "train.grad_accum=2",
        "train.max_steps=6",
        "train.lr=3e-3",
        "train.save_every=2",
        "train.weight_decay=0.01",
        "train.scheduler=cosine",
        "train.warmup_steps=2",
        "train.max_grad_norm=1.0",
        f"train.resume={str(resume).lower()}",
        "train.save_final=false",
        *extra,
    )
    model, tok = tiny_model()
    result = train(cfg, records=records, model=model, tokenizer=tok, callbacks=callbacks)
    return model, result


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(["objective.name=dpo"], id="full-dpo"),
        pytest.param(
            ["objective.name=kto", "lora.enabled=true", "lora.dropout=0.2", "lora.r=4"], id="lora-kto-dropout"
        ),
    ],
)
def test_killed_then_resumed_equals_uninterrupted(tmp_path, extra):
    records = synthetic_pairs(5)  # 5 examples, global batch 2: batches straddle epoch ends
    whole, _ = _run(tmp_path / "a", extra, records)

    with pytest.raises(Killed):
        _run(tmp_path / "b", extra, records, callbacks=[kill_at(3)])
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [2]
    resumed, result = _run(tmp_path / "b", extra, records, resume=True)

    assert result.resumed_from == 2 and result.steps == 6
    assert max_abs_diff(state(whole), state(resumed)) < 1e-6
    # the metrics file reads as one uninterrupted run, with the same numbers
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["lr"] == pytest.approx(ra["lr"], rel=1e-12)


def test_checkpoint_contents_and_pruning(tmp_path):
    records = synthetic_pairs(4)
    cfg = make_cfg(
        tmp_path,
        "train.batch_size=2",
        "train.max_steps=5",
        "train.save_every=1",
        "train.keep_last=2",
        "lora.enabled=true",
        "lora.r=2",
        "train.save_final=false",
    )
    model, tok = tiny_model()
    train(cfg, records=records, model=model, tokenizer=tok)
    ckpts = list_checkpoints(tmp_path / "checkpoints")
    assert [s for s, _ in ckpts] == [4, 5]
    last = latest_checkpoint(tmp_path / "checkpoints")
    names = sorted(p.name for p in last.iterdir())
    assert names == [
        "model.safetensors",
        "optimizer.json",
        "optimizer.safetensors",
        "rng-rank0.json",
        "rng-rank0.safetensors",
        "scheduler.json",
        "state.json",
    ]
    from safetensors.torch import load_file

    weights = load_file(str(last / "model.safetensors"))
    assert weights and all("lora_" in k for k in weights)  # LoRA: adapters only
    st = json.loads((last / "state.json").read_text())
    assert st["step"] == 5 and st["schedule"]["position"] == 5 and st["objective"] == "dpo"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    # a half-written checkpoint (no state.json) or a leftover temp dir is never "latest"
    (tmp_path / "checkpoints" / "step-00000009").mkdir()
    (tmp_path / "checkpoints" / ".tmp-step-00000010").mkdir()
    assert latest_checkpoint(tmp_path / "checkpoints") == last
    # starting over in a directory with checkpoints needs an explicit resume
    with pytest.raises(TrainingError, match="resume"):
        train(cfg, records=records, model=tiny_model()[0], tokenizer=tok)


@dataclass
class _NanParams(DPOParams):
    nan_at_call: int = 3


_calls = {"n": 0}


@pytest.fixture
def nan_objective():
    """A DPO whose loss turns NaN at its n-th call, and its algorithm (both registered for this test only)."""

    def nan_dpo(inputs, params):
        _calls["n"] += 1
        loss, metrics = dpo(inputs, DPOParams(beta=params.beta))
        if _calls["n"] == params.nan_at_call:
            loss = loss * torch.tensor(float("nan"))
        return loss, metrics

    _calls["n"] = 0
    register("nan_dpo_test", _NanParams, inputs="pair")(nan_dpo)
    ALGORITHMS["nan_dpo_test"] = replace(ALGORITHMS["dpo"], name="nan_dpo_test", objective="nan_dpo_test")
    yield "nan_dpo_test"
    REGISTRY.pop("nan_dpo_test")
    ALGORITHMS.pop("nan_dpo_test")


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, nan_objective):
    records = synthetic_pairs(4)
    cfg = make_cfg(
        tmp_path,
        f"algorithm={nan_objective}",
        "objective.params={nan_at_call: 3}",
        "train.batch_size=2",
        "train.max_steps=5",
        "train.save_every=1",
        "train.keep_last=5",
        "reference.mode=frozen_copy",
        "train.lr=1e-3",
    )
    model, tok = tiny_model()
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 3.*step-00000002") as err:
        train(cfg, records=records, model=model, tokenizer=tok)
    assert "step 3" in str(err.value)
    assert [s for s, _ in list_checkpoints(tmp_path / "checkpoints")] == [1, 2]
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "checkpoints" / "step-00000002" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in saved.values())
    # the weights were not updated by the bad step: they are still the step-2 weights
    current = {k: v for k, v in model.state_dict().items() if k in saved}
    assert max_abs_diff(current, saved) == 0.0
    assert not (tmp_path / "final").exists()
