"""The online schedule: sample two completions per prompt from the current policy, judge, train on the pair."""

from __future__ import annotations

import math

import pytest

from preflab.data.tokenize import Tokenizer
from preflab.errors import DataError
from preflab.generation.sampler import Completion
from preflab.models import tiny_model, tiny_tokenizer
from preflab.training import read_metrics, train
from preflab.training.online import OnlineSchedule, prompts_of
from test_training_utils import LengthJudge, make_cfg

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]


def _completion(tok, text, eos=True):
    ids = tok(text, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if eos else [])
    return Completion(text=text, token_ids=ids, finish_reason="stop" if eos else "length")


def test_schedule_orders_each_pair_by_the_judge_and_trains_on_the_sampled_ids():
    tok = tiny_tokenizer()
    calls = []

    def sample(prompts, seed):
        calls.append((list(prompts), seed))
        return [
            [_completion(tok, f"a{i}"), _completion(tok, f"longer answer {i}", eos=False)] for i in range(len(prompts))
        ]

    schedule = OnlineSchedule(
        PROMPTS, sample, LengthJudge(scale=4.0), Tokenizer(tok), batch_size=2, seed=3, soft_labels=True
    )
    batch = schedule.next_batch()
    ((prompts, seed),) = calls
    assert len(prompts) == 2 and seed == schedule.sampling_seed(0)
    seqs = batch.sequences
    per_seq = [
        [t for t, s in zip(seqs.target_ids.tolist(), seqs.sequence_index.tolist(), strict=True) if s == k]
        for k in range(4)
    ]
    # sequences: chosen of pair 0, 1, then rejected of pair 0, 1; exactly the sampled ids (no EOS added
    # to the completion that hit max_new_tokens)
    eos = tok.eos_token_id
    assert [tok.decode(ids) for ids in per_seq] == [
        "longer answer 0",
        "longer answer 1",
        "a0" + tok.eos_token,
        "a1" + tok.eos_token,
    ]
    assert per_seq[0][-1] != eos and per_seq[2][-1] == eos
    p = 1 / (1 + math.exp(-(15 - 2) / 4.0))  # the judge's P(longer ≻ short)
    assert batch.prob.tolist() == pytest.approx([p, p])
    assert schedule.metrics()["online/judge_confidence"] == pytest.approx(p)
    assert schedule.metrics()["online/ties"] == 0.0
    assert schedule.state_dict()["position"] == 1


def test_judge_must_return_probabilities():
    class Broken(LengthJudge):
        def compare(self, prompt, a, b):
            return 1.5

    tok = tiny_tokenizer()
    schedule = OnlineSchedule(
        PROMPTS, lambda ps, s: [[_completion(tok, "x")] * 2 for _ in ps], Broken(), Tokenizer(tok), 2
    )
    with pytest.raises(DataError, match="not a probability"):
        schedule.next_batch()


def test_prompts_of_dedupes_in_order():
    from preflab.data import PreferencePair

    recs = [PreferencePair("a", "x", "y"), "b", PreferencePair("a", "z", "w")]
    assert prompts_of(recs) == ["a", "b"]
    with pytest.raises(DataError, match="row 0"):
        prompts_of([""])


def test_online_dpo_trains_from_its_own_samples(tmp_path):
    cfg = make_cfg(
        tmp_path,
        "objective.name=online_dpo",
        "train.batch_size=2",
        "train.max_steps=3",
        "train.lr=1e-3",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "lora.enabled=true",
        "lora.r=4",
        "train.save_final=false",
    )
    model, tok = tiny_model()
    result = train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge())
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2, 3]
    # step 1: policy == reference (adapters start at zero), so the DPO loss is exactly log 2
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    # on-policy batches log KL(π‖π_ref) (k1): exactly 0 while the adapters are still zero, then away from it
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and all(math.isfinite(r["kl"]) for r in rows)
    assert all(0.5 <= r["online/judge_confidence"] <= 1.0 for r in rows)
    assert all(0 < r["online/completion_tokens"] <= 6 for r in rows)  # ≤ 6 sampled tokens (EOS included)
    assert result.steps == 3 and math.isfinite(result.train_metrics["loss"])

    # same seed, same samples, same numbers
    cfg2 = make_cfg(
        tmp_path / "again",
        *[
            f"{k}={v}"
            for k, v in (
                ("objective.name", "online_dpo"),
                ("train.batch_size", 2),
                ("train.max_steps", 3),
                ("train.lr", 1e-3),
                ("online.max_new_tokens", 6),
                ("online.temperature", 1.0),
                ("lora.enabled", "true"),
                ("lora.r", 4),
                ("train.save_final", "false"),
            )
        ],
    )
    model2, _ = tiny_model()
    train(cfg2, records=PROMPTS, model=model2, tokenizer=tok, judge=LengthJudge())
    rows2 = read_metrics(tmp_path / "again" / "metrics.jsonl", "train")
    assert [r["loss"] for r in rows2] == pytest.approx([r["loss"] for r in rows], abs=1e-7)


def test_online_needs_max_steps_and_no_cached_reference(tmp_path):
    from preflab.errors import ConfigError

    model, tok = tiny_model()
    with pytest.raises(ConfigError, match="max_steps"):
        train(
            make_cfg(tmp_path, "objective.name=online_dpo"),
            records=PROMPTS,
            model=model,
            tokenizer=tok,
            judge=LengthJudge(),
        )
    with pytest.raises(ConfigError, match="cannot be cached"):
        train(
            make_cfg(tmp_path, "objective.name=online_dpo", "reference.mode=cached", "train.max_steps=1"),
            records=PROMPTS,
            model=model,
            tokenizer=tok,
            judge=LengthJudge(),
        )


def test_online_runs_on_suite_prompts_log_gold_and_proxy_reward_for_the_over_optimisation_curve(tmp_path):
    from preflab.evaluation.report import build_report
    from preflab.feedback.tasks import get_suite

    cfg = make_cfg(
        tmp_path,
        "objective.name=online_dpo",
        "train.batch_size=2",
        "train.max_steps=3",
        "train.lr=1e-3",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "online.num_prompts=4",
        "train.save_final=false",
    )
    model, tok = tiny_model()
    train(cfg, model=model, tokenizer=tok)  # judge: gold, prompts: the suite's
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert all(0.0 <= r["gold_reward"] <= 1.0 for r in rows)
    assert [r["proxy_reward"] for r in rows] == [r["gold_reward"] for r in rows]  # the gold judge is the proxy
    assert {"kl", "gold_reward"} <= set(rows[-1])
    assert len(get_suite("default").tasks(4, seed=0)) == 4
    html = build_report(tmp_path).path.read_text()
    assert "Over-optimisation: gold vs proxy reward" in html and "from metrics.jsonl" in html
