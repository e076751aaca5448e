"""preflab rm-eval in and out of the training families, and the reward-model section of the report (reliability
diagram)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from typer.testing import CliRunner

from preflab.cli import app
from preflab.data import save_records
from preflab.data.records import PreferencePair
from preflab.evaluation.reward_model import reward_pair_metrics
from preflab.models import load_reward_model, load_tokenizer

WORDS = "apple river stone cloud green quick lamp house tree bird".split()


def pairs(n: int, family: str, seed: int) -> list[PreferencePair]:
    rng = random.Random(seed)
    return [
        PreferencePair(
            " ".join(rng.choices(WORDS, k=3)),
            " ".join(rng.choices(WORDS, k=2)) + " !",
            " ".join(rng.choices(WORDS, k=2)),
            metadata={"family": family, "gold_chosen": 1.0, "gold_rejected": float(i % 3 == 0)},
        )
        for i in range(n)
    ]


def test_in_and_out_of_family_split_by_hand():
    r = reward_pair_metrics(
        [1.0, -1.0, 2.0, 1.0],
        [0.0, 0.0, 0.0, 3.0],
        [None] * 4,
        gold=[(1.0, 0.0)] * 4,
        families=["a", "a", "b", "c"],
        train_families=["a"],
    )
    assert r.in_family == {"n": 2.0, "accuracy": 0.5, "gold_agreement": 0.5, "gold_pairs": 2.0}
    assert r.out_of_family == {"n": 2.0, "accuracy": 0.5, "gold_agreement": 0.5, "gold_pairs": 2.0}
    assert r.train_families == ["a"]
    assert reward_pair_metrics([1.0], [0.0], [None], families=["a"]).in_family is None


def test_rm_eval_splits_held_out_families_and_the_report_draws_the_reliability_diagram(
    tmp_path, tiny_dir, monkeypatch, capsys
):
    from fault_helpers import run_cli
    from preflab.evaluation.report import build_report

    tok = load_tokenizer(str(tiny_dir))
    torch.manual_seed(0)
    run = tmp_path / "run"
    load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id).save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    save_records(pairs(6, "seen", 0), tmp_path / "train.jsonl")
    held = pairs(6, "seen", 1) + pairs(4, "unseen", 2)
    save_records(held, tmp_path / "held.jsonl")
    res = CliRunner().invoke(
        app,
        ["rm-eval", str(run), "--pairs", str(tmp_path / "held.jsonl"), "--train-pairs", str(tmp_path / "train.jsonl")],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((run / "rm_eval.json").read_text())
    assert saved["train_families"] == ["seen"]
    assert saved["in_family"]["n"] == 6 and saved["out_of_family"]["n"] == 4
    assert saved["out_of_family"]["accuracy"] == pytest.approx(saved["families"]["unseen"]["accuracy"])
    assert saved["in_family"]["gold_agreement"] == pytest.approx(saved["families"]["seen"]["gold_agreement"])
    assert "held-out fams   n=4" in res.output
    report = build_report(run)
    html = report.path.read_text()
    assert "Reward model on held-out pairs" in html and "held-out families (out of distribution)" in html
    assert any(p.name == "reliability.png" for p in report.pngs)
    # a model without a trained head is a one-line error, exit 2
    code, line = run_cli(
        monkeypatch,
        capsys,
        "rm-eval",
        str(tiny_dir),
        "--pairs",
        str(tmp_path / "held.jsonl"),
        "--out",
        str(tmp_path / "x.json"),
    )
    assert code == 2 and "has no trained reward head" in line
