import json
import math
from collections import Counter

import pytest
import yaml

from preflab.config import load_config
from preflab.pipelines import split_tasks
from preflab.pipelines.defaults import QUICKSTART_DEFAULTS, quickstart_defaults
from preflab.pipelines.stages import Stages, fingerprint


def test_recipe_matches_builtin_defaults():
    recipe = load_config("recipes/quickstart.yaml")
    assert recipe == quickstart_defaults()
    assert yaml.safe_load(open("recipes/quickstart.yaml")) == QUICKSTART_DEFAULTS


def test_split_is_disjoint_balanced_and_seeded():
    train, held, _ = split_tasks("default", 120, 80, seed=3)
    assert (len(train), len(held)) == (120, 80)
    assert not {t.prompt for t in train} & {t.prompt for t in held}
    assert len({t.prompt for t in train}) == 120  # no repeated prompt inside a set either
    fam_train, fam_held = Counter(t.family for t in train), Counter(t.family for t in held)
    assert set(fam_train) == set(fam_held)  # every family in both sets
    again, held_again, _ = split_tasks("default", 120, 80, seed=3)
    assert [t.id for t in again] == [t.id for t in train] and [t.id for t in held_again] == [t.id for t in held]
    other, _, _ = split_tasks("default", 120, 80, seed=4)
    assert [t.prompt for t in other] != [t.prompt for t in train]


def test_stages_reuse_only_on_same_fingerprint(tmp_path):
    calls = []
    s = Stages(tmp_path)
    s.run("a", fingerprint(1), lambda: calls.append(1) or {"x": 1}, log=lambda m: None)
    again = Stages(tmp_path)  # a rerun reads the manifest
    assert again.run("a", fingerprint(1), lambda: calls.append(2), log=lambda m: None) == {"x": 1}
    again.run("a", fingerprint(2), lambda: calls.append(3), log=lambda m: None)
    assert calls == [1, 3]


@pytest.mark.slow
def test_reduced_quickstart_end_to_end_on_tiny_model(tmp_path, tiny_dir):
    from preflab.data import load_preferences
    from preflab.feedback import read_samples
    from preflab.pipelines import run_quickstart
    from preflab.training import read_metrics

    run = tmp_path / "run"
    cfg = quickstart_defaults(
        [
            f"output_dir={run}",
            f"model.name_or_path={tiny_dir}",
            "quickstart.train_prompts=12",
            "quickstart.eval_prompts=10",
            "quickstart.samples_per_prompt=3",
            "quickstart.max_new_tokens=12",
            "quickstart.n_bootstrap=200",
            "quickstart.rounds=1",  # one offline round (two rounds: the test below)
            "train.max_length=256",
            "train.save_every=3",
            "train.lr=1e-3",
            "train.progress=false",
        ]
    )
    result = run_quickstart(cfg)
    # samples: 12 prompts x 3 completions, each gold-scored
    samples = read_samples(run / "samples.jsonl")
    assert len(samples) == 12 and all(len(s.completions) == 3 == len(s.gold_scores) for s in samples)
    # pairs: with `random`, `pairs_per_prompt` distinct random pairs of the 3 completions (3 possible); with a
    # ranking strategy (best-vs-worst), one pair per prompt whose annotator ranking is not all tied. Pairs of
    # identical texts, empty answers and prompts left with one answer are skipped; every dropped candidate is
    # counted in the stage info.
    stages = json.loads((run / "stages.json").read_text())
    pairs = load_preferences(run / "pairs.jsonl").records
    info = stages["pairs"]["info"]
    skipped = info.get("identical_completions_skipped", 0) + info.get("prompts_with_under_2_completions_skipped", 0)
    skipped += sum(v for k, v in info.items() if k.startswith("invalid_pairs_"))
    k = cfg.quickstart.pairs_k()
    if cfg.quickstart.pair_strategy == "random":
        expected = 12 * min(k, 3) - skipped
    else:  # best-vs-worst: min(k, 3 // 2) = 1 disjoint pair per prompt; ties (all-tied rankings) counted
        expected = 12 * min(k, 1) - info.get("tied_pairs", 0) - skipped
    assert len(pairs) == info["pairs"] == expected > 0
    if cfg.quickstart.pair_strategy != "random":
        assert len({p.prompt for p in pairs}) == len(pairs)  # one pair per prompt
    assert all(p.annotator and "gold_chosen" in p.metadata for p in pairs)
    # training: `epochs` passes of batch 8, metrics logged, checkpoint + final HF model written
    steps = max(1, math.ceil(cfg.train.epochs * len(pairs) / cfg.train.batch_size))
    assert stages["train"]["info"]["steps"] == steps
    assert [m["step"] for m in read_metrics(run / "metrics.jsonl", split="train")][-1] == steps
    assert (run / "final" / "adapter_config.json").is_file()  # a LoRA run: final/ is the adapter
    assert any((run / "checkpoints").iterdir())
    # evaluation over the 10 held-out prompts, with a CI around the win rate, and the report
    ev = json.loads((run / "eval" / "quickstart.json").read_text())
    assert ev["win_rate"]["n"] == 10
    assert ev["win_rate"]["ci_low"] <= ev["win_rate"]["win_rate"] <= ev["win_rate"]["ci_high"]
    assert result.summary["n_prompts"] == 10 and result.report_path.is_file()
    assert "<html" in result.report_path.read_text().lower()
    # a rerun with the same config reuses every finished stage
    before = (run / "samples.jsonl").stat().st_mtime_ns
    again = run_quickstart(cfg)
    assert (run / "samples.jsonl").stat().st_mtime_ns == before
    assert all(again.timings[s] == 0.0 for s in ("prompts", "samples", "pairs", "train", "eval"))


def test_two_rounds_sample_the_second_half_from_the_first_rounds_policy(tmp_path, tiny_dir):
    """quickstart.rounds = 2: round 2 samples its half of the prompts (every other one, so that both rounds see
    every family) from round 1's final/, trains a new adapter on that policy, and the evaluation reads round 2's
    final/."""
    from preflab.feedback import read_samples
    from preflab.generation.sampler import SamplingParams, sample
    from preflab.models import load_model, load_tokenizer
    from preflab.pipelines import run_quickstart
    from preflab.pipelines.tasks import read_tasks

    run = tmp_path / "run"
    sets = [
        f"output_dir={run}",
        f"model.name_or_path={tiny_dir}",
        "quickstart.train_prompts=10",
        "quickstart.eval_prompts=6",
        "quickstart.samples_per_prompt=3",
        "quickstart.max_new_tokens=8",
        "quickstart.n_bootstrap=100",
        "quickstart.rounds=2",
        "train.max_length=128",
        "train.batch_size=2",
        "train.lr=5e-2",
        "train.progress=false",
    ]
    result = run_quickstart(quickstart_defaults(sets))
    train, _ = read_tasks(run / "prompts.jsonl")
    first, second = read_samples(run / "samples.jsonl"), read_samples(run / "rounds" / "r2" / "samples.jsonl")
    assert [s.prompt for s in first] == [t.prompt for t in train[0::2]]
    assert [s.prompt for s in second] == [t.prompt for t in train[1::2]]
    fam = {t.prompt: t.family for t in train}
    assert len(set(fam.values())) > 2
    for f in set(fam.values()):  # each round gets its share of every family (the shares differ by at most one)
        counts = [sum(fam[s.prompt] == f for s in share) for share in (first, second)]
        assert abs(counts[0] - counts[1]) <= 1, (f, counts)
    stages = json.loads((run / "stages.json").read_text())
    assert {"samples.r2", "pairs.r2", "train.r2"} <= set(stages)
    # round 2's samples are round 1's policy's, drawn with round 2's seed (and not the initial model's)
    tok = load_tokenizer(str(tiny_dir))
    params = SamplingParams(max_new_tokens=8, temperature=0.8, seed=1_000, n=3, batch_size=256)
    prompts = [t.prompt for t in train[1::2]]
    pi1 = sample(load_model(str(run / "final")), tok, prompts, params)
    assert [[c.text for c in group] for group in pi1] == [s.completions for s in second]
    pi0 = sample(load_model(str(tiny_dir)), tok, prompts, params)
    assert [[c.text for c in group] for group in pi0] != [s.completions for s in second]
    # round 2 trains a new adapter on round 1's policy (its reference too); the evaluation reads that adapter.
    # Round 1, not the last, wrote its policy merged (a full model), so that round 2 loads no adapter chain.
    assert (run / "final" / "model.safetensors").is_file() and not (run / "final" / "adapter_config.json").exists()
    adapter = json.loads((run / "rounds" / "r2" / "final" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((run / "final").resolve())
    steps = stages["train"]["info"]["steps"] + stages["train.r2"]["info"]["steps"]
    assert result.summary["rounds"] == 2 and result.summary["train_steps"] == steps
    assert result.summary["pairs"] == stages["pairs"]["info"]["pairs"] + stages["pairs.r2"]["info"]["pairs"]
    ev = json.loads((run / "eval" / "quickstart.json").read_text())
    held = [row["prompt"] for row in ev["samples"]]
    greedy = SamplingParams(max_new_tokens=8, temperature=0.0, n=1, batch_size=256)

    def answers(path):
        return [group[0].text for group in sample(load_model(str(path)), tok, held, greedy)]

    assert answers(run / "rounds" / "r2" / "final") == [row["a"] for row in ev["samples"]]
    assert answers(run / "final") != [row["a"] for row in ev["samples"]]


def test_more_rounds_than_prompts_is_a_config_error(tmp_path, tiny_dir):
    from preflab.errors import ConfigError
    from preflab.pipelines import run_quickstart

    cfg = quickstart_defaults([f"output_dir={tmp_path / 'r'}", "quickstart.train_prompts=2", "quickstart.rounds=3"])
    with pytest.raises(ConfigError, match="3 rounds need at least as many training prompts"):
        run_quickstart(cfg)
