"""From samples to preference data (rules, RSO, annotator votes, rankings, unpaired) and the CLI."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.data import load_preferences
from preflab.errors import DataError
from preflab.feedback import builders
from preflab.feedback.annotators import load_pool
from preflab.feedback.samples import PromptSamples, read_samples, write_samples
from preflab.feedback.tasks import get_suite

TASK = get_suite("word_limit").tasks(1, seed=0)[0]
TOPIC = TASK.params["topic_words"][0]  # word_limit answers must be on topic
# AB and CDE: four distinct words within the limit (1.0); W40 and W20: the topic word looped (a quarter of k / words)
AB, CDE = f"{TOPIC} is a joy", f"c d e {TOPIC}"
W40, W20 = " ".join([TOPIC] * 40), " ".join([TOPIC] * 20)


def make_samples() -> list[PromptSamples]:
    comps = [AB, W40, W20, CDE]
    return [
        PromptSamples(
            prompt=TASK.prompt, completions=comps, id="p0", task=TASK, gold_scores=[TASK.score(c) for c in comps]
        ),
        PromptSamples(prompt="free prompt", completions=["x", "y", "z"], id="p1", gold_scores=[0.2, 0.9, 0.5]),
    ]


def test_rule_pairs_and_rankings():
    samples = make_samples()
    counts = Counter()
    pairs = builders.rule_pairs(samples, "best-vs-worst", counts=counts)
    assert [(p.chosen, p.rejected) for p in pairs] == [(AB, W40), ("y", "x")]
    assert pairs[0].metadata["family"] == "word_limit" and pairs[0].annotator == "gold"
    assert pairs[1].metadata == {"score_chosen": 0.9, "score_rejected": 0.2}
    allp = builders.rule_pairs(samples, "all-pairs", counts=counts)
    assert len(allp) == 5 + 3  # prompt 0: 6 pairs, one tie (AB vs CDE both score 1)
    assert counts["tied_pairs"] == 1
    ranks = builders.to_rankings(samples, [[1, 2, 3, 4], [3, 2, 1]], annotator="rm")
    assert ranks[1].scores == [3.0, 2.0, 1.0] and ranks[1].annotator == "rm"


def test_rso_acceptance_probability():
    beta = 0.5
    rewards = [-beta * math.log(2), 0.0]  # index 0 accepted w.p. exp(-ln 2) = 1/2 in the first sweep
    rng = random.Random(0)
    first = [builders.rso_select(rewards, 1, beta, rng)[0] for _ in range(4000)]
    assert abs(first.count(0) / 4000 - 0.5) <= 4 * math.sqrt(0.25 / 4000)
    r = [0.3, 0.9, 0.1, 0.5]
    assert builders.rso_select(r, 4, 1e-9, random.Random(0)) == [1, 3, 0, 2]  # β -> 0: best first
    assert builders.rso_select(r, 4, 1e9, random.Random(0)) == [0, 1, 2, 3]  # β -> ∞: uniform
    pairs = builders.rso_pairs(make_samples()[1:], [r[:3]], beta=1e-9, num_accepted=2)
    assert [(p.chosen, p.rejected) for p in pairs] == [("y", "x")]
    with pytest.raises(DataError, match="beta"):
        builders.rso_select(r, 2, 0.0, random.Random(0))


def test_annotate_pairs_records_annotator_and_group():
    samples = make_samples()
    pairs = builders.annotate_pairs(samples, load_pool("gold"), strategy="all")
    assert len(pairs) == 6 + 3
    assert all(p.metadata["gold_chosen"] >= p.metadata["gold_rejected"] for p in pairs)
    assert {p.annotator for p in pairs} == {"gold"}
    mixed = builders.annotate_pairs(
        samples * 50, load_pool("mixed", seed=1), strategy="random", pairs_per_prompt=2, seed=1
    )
    assert len(mixed) == 200 and all(p.annotator and p.group for p in mixed)
    assert {p.group for p in mixed} == {"majority", "concise", "detailed", "cyclic"}
    shown = sum(p.metadata["shown_first"] == "chosen" for p in mixed)
    assert 60 < shown < 140  # random presentation order
    again = builders.annotate_pairs(
        samples * 50, load_pool("mixed", seed=1), strategy="random", pairs_per_prompt=2, seed=1
    )
    assert [(p.chosen, p.annotator) for p in again] == [(p.chosen, p.annotator) for p in mixed]


def test_annotator_best_vs_worst_takes_nested_extremes():
    four = PromptSamples(prompt="q", completions=["q", "r", "s", "t"], id="p2", gold_scores=[0.1, 0.7, 0.4, 0.9])
    counts = Counter()
    pairs = builders.annotator_pairs(
        [four, make_samples()[1]], load_pool("gold"), strategy="best-vs-worst", pairs_per_prompt=2, counts=counts
    )
    # gold order t > r > s > q: t>q then r>s; the 3-completion prompt has room for one pair only (y>x)
    assert [(p.chosen, p.rejected) for p in pairs] == [("t", "q"), ("r", "s"), ("y", "x")]
    assert [(p.metadata["gold_chosen"], p.metadata["gold_rejected"]) for p in pairs] == [
        (0.9, 0.1),
        (0.7, 0.4),
        (0.9, 0.2),
    ]
    assert counts["agrees_with_gold"] == 3
    one = builders.annotator_pairs([four], load_pool("gold"), strategy="best-vs-worst")
    assert [(p.chosen, p.rejected) for p in one] == [("t", "q")]


def test_annotate_rankings_and_unpaired():
    samples = make_samples()
    ranks = builders.annotate_rankings(samples, load_pool("gold"))
    assert ranks[1].scores == [0.0, 2.0, 1.0]  # Borda wins follow gold 0.2 < 0.5 < 0.9
    counts = Counter()
    unp = builders.to_unpaired(samples[1:], threshold=0.5, counts=counts)
    assert [(u.completion, u.label) for u in unp] == [("x", False), ("y", True)]
    assert counts["at_threshold"] == 1
    rel = builders.to_unpaired(samples[1:])  # mean 0.533: x, z below; y above
    assert [u.label for u in rel] == [False, True, False]
    with pytest.raises(DataError, match="gold"):
        builders.to_unpaired([PromptSamples(prompt="q", completions=["a"])])


def test_samples_roundtrip_and_errors(tmp_path):
    path = write_samples(make_samples(), tmp_path / "c.jsonl")
    back = read_samples(path)
    assert [b.to_dict() for b in back] == [s.to_dict() for s in make_samples()]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "q", "completions": ["a"]}\n{"prompt": "q", "completions": ["a", "b"], "gold_scores": [0.5]}\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="line 2.*gold_scores"):
        read_samples(bad)
    bad.write_text('{"prompt": "q", "completions": "a"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 1.*completions"):
        read_samples(bad)


def test_cli_sample_then_annotate(tiny_dir, tmp_path):
    runner = CliRunner()
    comp = tmp_path / "comp.jsonl"
    res = runner.invoke(
        app,
        [
            "sample",
            "-m",
            str(tiny_dir),
            "--suite",
            "default",
            "--n",
            "4",
            "-k",
            "3",
            "--max-new-tokens",
            "6",
            "--logprobs",
            "-o",
            str(comp),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "gold score by family" in res.output and "tokens/s" in res.output
    rows = read_samples(comp)
    assert len(rows) == 4 and all(len(r.completions) == 3 and len(r.logprobs) == 3 for r in rows)
    assert all(r.gold_scores == [r.task.score(c) for c in r.completions] for r in rows)
    prefs = tmp_path / "prefs.jsonl"
    res = runner.invoke(app, ["annotate", str(comp), "--pool", "mixed", "--pairs", "all", "-o", str(prefs)])
    assert res.exit_code == 0, res.output
    loaded = load_preferences(str(prefs)).records
    assert len(loaded) == 4 * 3 and all(p.annotator and p.group for p in loaded)
    res = runner.invoke(app, ["annotate", str(comp), "-f", "unpaired", "--pairs", "all", "-o", str(prefs)])
    assert res.exit_code == 0, res.output
    first = json.loads(prefs.read_text(encoding="utf-8").splitlines()[0])
    assert set(first) >= {"prompt", "completion", "label", "annotator"}
    res = runner.invoke(app, ["annotate", str(comp), "--pool", "noisy", "--pairs", "rso", "-o", str(prefs)])
    assert res.exit_code != 0 and "pool" in str(res.exception)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n\nsay hi\n", encoding="utf-8")
    res = runner.invoke(
        app, ["sample", "-m", str(tiny_dir), "--prompts", str(prompts), "--max-new-tokens", "4", "-o", str(comp)]
    )
    assert res.exit_code == 0, res.output
    assert [r.prompt for r in read_samples(comp)] == ["hello", "say hi"]


def test_annotator_pairs_by_ranking_rule():
    samples = make_samples()
    counts = Counter()
    gold = builders.annotator_pairs(samples, load_pool("gold"), strategy="best-vs-worst", counts=counts)
    # a noiseless annotator's Borda ranking puts the gold best first and the gold worst last
    assert gold[0].chosen in (AB, CDE)  # both score 1: the tie's vote decides
    assert [(p.chosen, p.rejected) for p in gold][0][1] == W40 and gold[1].chosen == "y"
    assert [(p.metadata["gold_chosen"], p.metadata["gold_rejected"]) for p in gold] == [
        (1.0, TASK.score(W40)),
        (0.9, 0.2),
    ]
    assert counts["agrees_with_gold"] == 2 and gold[0].annotator == "gold"
    # label noise: flips make some best-vs-worst pairs wrong, but far fewer than a single noisy vote does
    many = [
        PromptSamples(prompt=f"p{i}", completions=["a", "b", "c", "d"], id=f"p{i}", gold_scores=[0.1, 0.4, 0.6, 0.9])
        for i in range(400)
    ]
    ranked, single = Counter(), Counter()
    builders.annotator_pairs(many, load_pool("noisy", seed=3), strategy="best-vs-worst", seed=3, counts=ranked)
    builders.annotator_pairs(many, load_pool("noisy", seed=3), strategy="random", seed=3, counts=single)
    assert ranked["against_gold"] / ranked.total() < single["against_gold"] / single.total()
    assert 0 < ranked["against_gold"]
    assert builders.annotator_pairs(samples, load_pool("gold"), strategy="all") == builders.annotate_pairs(
        samples, load_pool("gold"), strategy="all"
    )
    with pytest.raises(DataError, match="best-vs-worst"):
        builders.annotator_pairs(samples, load_pool("gold"), strategy="best-of-all")


def test_cli_annotate_nested_best_vs_worst(tmp_path):
    comp = write_samples(make_samples(), tmp_path / "c.jsonl")
    out = tmp_path / "nested.jsonl"
    res = CliRunner().invoke(
        app, ["annotate", str(comp), "--pairs", "best-vs-worst", "--pairs-per-prompt", "2", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    got = [(p.chosen, p.rejected) for p in load_preferences(str(out)).records]
    want = [(p.chosen, p.rejected) for p in builders.rule_pairs(make_samples(), "best-vs-worst", k=2)]
    # prompt 0 (4 completions) gives 2 nested pairs, prompt 1 (3 completions) room for one: y > x
    assert got == want and len(want) == 3 and want[-1] == ("y", "x")


@pytest.mark.parametrize(
    ("args", "want_records"),
    [
        (["--pairs", "best-vs-worst"], 2),  # p0 and p1 (its best is empty: y > z instead)
        (["--pool", "gold", "--pairs", "all"], 6 + 1),  # p0: 4 choose 2; p1: y vs z
        (["-f", "rankings", "--pool", "gold"], 2),
        (["-f", "unpaired", "--threshold", "0.5"], 4 + 2 + 1),  # one completion is enough for a label: p2 stays
    ],
)
def test_cli_annotate_never_builds_records_from_empty_completions(tmp_path, args, want_records):
    """A tiny model's empty answers: annotate skips them (the data layer, so train, rejects an empty answer),
    and says how many it skipped and why."""
    samples = make_samples()
    samples[1] = PromptSamples(
        prompt="free prompt", completions=["", "y", " \n", "z"], id="p1", gold_scores=[1, 0.9, 0.8, 0.1]
    )
    samples.append(PromptSamples(prompt="other prompt", completions=["", "q"], id="p2", gold_scores=[0.9, 0.6]))
    comp = write_samples(samples, tmp_path / "c.jsonl")
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(app, ["annotate", str(comp), *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == want_records
    texts = [v for row in lines for k, v in row.items() if k in ("chosen", "rejected", "completion")]
    texts += [r for row in lines for r in row.get("responses", [])]
    assert texts and all(isinstance(t, str) and t.strip() for t in texts)
    skipped_prompts = 0 if "--threshold" in args else 1
    assert "skipped 3 empty completion(s)" in res.output
    assert f"{skipped_prompts} prompt(s) left with fewer than" in res.output
    assert "empty_completions_dropped=3" in res.output
