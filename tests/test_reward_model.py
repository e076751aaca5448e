"""Bradley–Terry reward models on language models: the loss on the model's own rewards, training through the one
loop (full and LoRA), save → load, the judge built from config, and evaluation (accuracy, ECE, gold agreement)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from preflab.config import RunConfig
from preflab.data import save_records
from preflab.data.collate import collate_examples
from preflab.data.records import PreferencePair, Unpaired
from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError, DataError
from preflab.evaluation.reward_model import (
    evaluate_reward_model,
    expected_calibration_error,
    reward_pair_metrics,
)
from preflab.feedback import RewardEnsembleJudge, make_judge
from preflab.models import RewardScorer, load_reward_model, load_tokenizer
from preflab.models.policy import NoReference
from preflab.objectives import get_objective
from preflab.training import train
from preflab.training.step import objective_loss

WORDS = "apple river stone cloud green quick lamp house tree bird music paper".split()


def nls(z: float) -> float:
    return math.log1p(math.exp(-z))


def separable(n: int, seed: int) -> list[PreferencePair]:
    """The chosen response ends in '!', the rejected one never holds it: a preference a reward model can learn."""
    rng = random.Random(seed)
    return [
        PreferencePair(
            " ".join(rng.choices(WORDS, k=3)),
            " ".join(rng.choices(WORDS, k=rng.randint(1, 4))) + " !",
            " ".join(rng.choices(WORDS, k=rng.randint(1, 4))),
            metadata={"family": "bang" if i % 2 else "other", "gold_chosen": 1.0, "gold_rejected": 0.0},
        )
        for i in range(n)
    ]


def rm_config(tmp_path, tiny_dir, **train_kw) -> RunConfig:
    lora = train_kw.pop("lora", False)
    train_cfg = {
        "lr": 1e-3,
        "batch_size": 8,
        "max_steps": 12,
        "bf16": False,
        "progress": False,
        "warmup_steps": 0,
        **train_kw,
    }
    return RunConfig.model_validate(
        {
            "algorithm": "bt_reward",
            "output_dir": str(tmp_path / "run"),
            "seed": 0,
            "model": {"name_or_path": str(tiny_dir)},
            "train": train_cfg,
            "lora": {"enabled": lora, "r": 8, "dropout": 0.0},
        }
    )


def rewards_of(scorer_model, tok, records, layout="padded") -> torch.Tensor:
    """(chosen rewards, rejected rewards) through the trainer's scorer."""
    tk = Tokenizer(tok)
    batch = collate_examples([tk.example(r, i) for i, r in enumerate(records)], "pair", layout, tok.pad_token_id)
    with torch.no_grad():
        return RewardScorer(scorer_model.eval())(batch.sequences).view(2, -1)


def test_the_loss_is_minus_log_sigmoid_of_the_models_own_reward_gap(tiny_dir):
    tok = load_tokenizer(str(tiny_dir))
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id)
    records = [
        PreferencePair("q one", "a good answer", "bad", margin=0.5, preference_prob=0.8),
        PreferencePair("q two", "yes", "no thanks", weight=2.0),
        PreferencePair("q three", "tie a", "tie b", preference_prob=0.5),
    ]
    tk = Tokenizer(tok)
    batch = collate_examples([tk.example(r, i) for i, r in enumerate(records)], "pair", "padded", tok.pad_token_id)
    assert batch.margin.tolist() == [0.5, 0.0, 0.0]
    spec = get_objective("bt_reward")
    loss, metrics = objective_loss(spec, spec.params(), RewardScorer(model), NoReference(), batch)
    with torch.no_grad():  # transformers' own forward: the logit at the last non-pad token
        r = model(input_ids=batch.sequences.input_ids, attention_mask=batch.sequences.attention_mask).logits[:, 0]
    rw, rl = r[:3].double().tolist(), r[3:].double().tolist()
    d = [a - b for a, b in zip(rw, rl, strict=True)]
    per = [0.8 * nls(d[0] - 0.5) + 0.2 * nls(-d[0] - 0.5), nls(d[1]), 0.5 * nls(d[2]) + 0.5 * nls(-d[2])]
    want = (per[0] + 2 * per[1] + per[2]) / 4
    assert loss.item() == pytest.approx(want, abs=1e-6)
    assert metrics["margin"].item() == pytest.approx(sum(d) / 3, abs=1e-6)
    assert metrics["accuracy"].item() == pytest.approx(sum(x > 0 for x in d) / 3)
    # every batch layout reads the same token
    for layout in ("packed", "prefix_shared"):
        assert torch.allclose(rewards_of(model, tok, records, layout).flatten(), r, atol=1e-5)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_a_tiny_reward_model_learns_a_planted_preference_and_loads_back_identically(tmp_path, tiny_dir, lora):
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(str(tiny_dir))
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id)
    cfg = rm_config(tmp_path, tiny_dir, lora=lora, lr=3e-3 if lora else 1e-3)
    held_out = separable(32, seed=1)
    res = train(cfg, records=separable(96, seed=0), eval_records=held_out, model=model, tokenizer=tok)
    assert res.eval_metrics["accuracy"] >= 0.9 and res.eval_metrics["margin"] > 0
    metrics = [json.loads(line) for line in (res.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "accuracy", "margin"} <= set(metrics[-1])
    # saved → loaded: the same rewards (LoRA: merged into the base, head included)
    loaded = AutoModelForSequenceClassification.from_pretrained(res.final_model_dir)
    assert not list(res.final_model_dir.glob("adapter_*"))
    with torch.no_grad():
        assert torch.allclose(rewards_of(model, tok, held_out[:8]), rewards_of(loaded, tok, held_out[:8]), atol=1e-6)
    # the judge reads the ids the trainer trained on: its rewards are the trainer's (bf16 autocast aside)
    judge = make_judge("reward_model", model=str(res.final_model_dir))
    ev = evaluate_reward_model(judge, held_out)
    assert ev.accuracy >= 0.9 and ev.gold_agreement == ev.accuracy and set(ev.families) == {"bang", "other"}
    trained = rewards_of(loaded, tok, held_out[:4])[0].tolist()
    assert judge.score_batch([p.prompt for p in held_out[:4]], [p.chosen for p in held_out[:4]]) == pytest.approx(
        trained, abs=0.05
    )


def test_reward_model_judge_from_config_compares_by_sigmoid_and_ensembles(tmp_path, tiny_dir):
    tok = load_tokenizer(str(tiny_dir))
    dirs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id)
        model.save_pretrained(tmp_path / f"rm{seed}")
        tok.save_pretrained(tmp_path / f"rm{seed}")
        dirs.append(str(tmp_path / f"rm{seed}"))
    judge = make_judge("reward_model", model=dirs[0])
    ra, rb = judge.score("why?", "because"), judge.score("why?", "no")
    assert judge.compare("why?", "because", "no") == pytest.approx(1 / (1 + math.exp(-(ra - rb))), abs=1e-9)
    ensemble = make_judge("reward_model", model=dirs)
    assert isinstance(ensemble, RewardEnsembleJudge)
    r0, r1 = (make_judge("reward_model", model=d).score("why?", "because") for d in dirs)
    means, stds = ensemble.score_with_uncertainty(["why?"], ["because"])
    assert means[0] == pytest.approx((r0 + r1) / 2) and stds[0] == pytest.approx(abs(r0 - r1) / 2)
    with pytest.raises(ConfigError, match="at least two"):
        RewardEnsembleJudge([judge])
    # the ensemble penalty (uncertainty-weighted optimisation): mean − λ·std, and comparisons use it
    careful = make_judge("reward_model", model=dirs, penalty=2.0)
    assert careful.score("why?", "because") == pytest.approx((r0 + r1) / 2 - 2.0 * abs(r0 - r1) / 2)
    rn0, rn1 = (make_judge("reward_model", model=d).score("why?", "no") for d in dirs)
    lhs = (r0 + r1) / 2 - abs(r0 - r1) - ((rn0 + rn1) / 2 - abs(rn0 - rn1))
    assert careful.compare("why?", "because", "no") == pytest.approx(1 / (1 + math.exp(-lhs)), abs=1e-9)
    with pytest.raises(ConfigError, match="needs a list of reward models"):
        make_judge("reward_model", model=dirs[0], penalty=1.0)
    with pytest.raises(ConfigError, match="penalty must be a number ≥ 0"):
        make_judge("reward_model", model=dirs, penalty=-1.0)


def test_expected_calibration_error_by_hand():
    # confidences max(q, 1-q): 0.9, 0.9, 0.6, 0.7 (q = 0.3 predicts the second, which won: outcome 1 - 0 = 1)
    ece, bins = expected_calibration_error([0.9, 0.9, 0.6, 0.3], [1.0, 0.0, 1.0, 0.0], n_bins=10)
    # bins [0.9, 0.95): conf 0.9, outcome ½; [0.6, 0.65): 0.6 vs 1; [0.7, 0.75): 0.7 vs 1
    assert ece == pytest.approx((2 * abs(0.9 - 0.5) + abs(0.6 - 1) + abs(0.7 - 1)) / 4)
    assert [(b.lo, b.count) for b in bins] == [(0.6, 1), (0.7, 1), (0.9, 2)]
    r = reward_pair_metrics(
        [1.0, 0.0, 2.0, 0.5],
        [0.0, 1.0, 2.0, 0.0],
        [None, 1.0, 1.0, 0.5],
        gold=[(1.0, 0.0), (0.0, 1.0), None, (0.2, 0.2)],
    )
    assert r.ties == 1 and r.accuracy == pytest.approx((1 + 0 + 0.5) / 3)
    assert r.gold_agreement == pytest.approx(1.0) and r.gold_pairs == 2


def test_reward_models_refuse_what_they_cannot_train_on(tmp_path, tiny_dir, tiny):
    cfg = rm_config(tmp_path, tiny_dir)
    with pytest.raises(DataError) as err:
        train(cfg, records=[Unpaired("q", "a", True), Unpaired("q", "b", False)])
    assert str(err.value) == (
        "field 'records': training data: unpaired feedback cannot be converted to pairs: it holds "
        "no comparison between responses; algorithm 'bt_reward' trains on pairs"
    )
    # a classifier with two labels is no Bradley–Terry reward model
    from transformers import LlamaForSequenceClassification

    lm, tok = tiny
    two = LlamaForSequenceClassification(lm.config.__class__(**{**lm.config.to_dict(), "num_labels": 2}))
    two.save_pretrained(tmp_path / "two")
    tok.save_pretrained(tmp_path / "two")
    with pytest.raises(ConfigError, match="2 labels") as err:
        load_reward_model(str(tmp_path / "two"))
    assert err.value.field == "model.name_or_path"


def test_rm_eval_command_prints_and_saves_accuracy_ece_and_gold(tmp_path, tiny_dir):
    from typer.testing import CliRunner

    from preflab.cli import app

    tok = load_tokenizer(str(tiny_dir))
    torch.manual_seed(0)
    final = tmp_path / "run" / "final"
    load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id).save_pretrained(final)
    tok.save_pretrained(final)
    save_records(separable(12, seed=3), tmp_path / "pairs.jsonl")
    res = CliRunner().invoke(app, ["rm-eval", str(tmp_path / "run"), "--pairs", str(tmp_path / "pairs.jsonl")])
    assert res.exit_code == 0, res.output
    out = res.output
    saved = json.loads((tmp_path / "run" / "rm_eval.json").read_text())
    assert saved["n"] == 12 and saved["gold_pairs"] == 12 and 0 <= saved["ece"] <= 0.5
    assert f"accuracy        {saved['accuracy']:.3f}" in out and "gold agreement" in out


def test_pairs_carry_a_margin_column():
    from preflab.data import load_preferences

    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b", "margin": 1.5},
        {"prompt": "q", "chosen": "c", "rejected": "d"},
    ]
    recs = load_preferences(rows).records
    assert [r.margin for r in recs] == [1.5, None] and "margin" not in recs[0].metadata
    with pytest.raises(DataError, match="margin"):
        load_preferences([{"prompt": "q", "chosen": "a", "rejected": "b", "margin": float("nan")}])
