"""Best-of-n over-optimisation: the unbiased subset estimator by enumeration, KL = log n − (n−1)/n, a planted proxy
that over-optimises, and `preflab overopt` end to end into the report."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
import torch

from preflab.evaluation.best_of_n import best_of_n_curve, best_of_n_kl, best_of_n_weights, bon_sizes


def brute_force(selection, values, n):
    """Mean over every n-subset of the value of the subset's best (ties: the tied values' mean)."""
    total = []
    for subset in itertools.combinations(range(len(selection)), n):
        top = max(selection[i] for i in subset)
        total.append(sum(values[i] for i in subset if selection[i] == top) / sum(selection[i] == top for i in subset))
    return sum(total) / len(total)


def test_subset_weights_by_hand_and_by_enumeration():
    # subsets of 2 from scores (0.1, 0.5, 0.3): best is 1, 2, 1 -> weights (0, 2/3, 1/3)
    assert best_of_n_weights([0.1, 0.5, 0.3], 2).tolist() == pytest.approx([0.0, 2 / 3, 1 / 3])
    # a tie shares: {0,1} half each, {0,2} -> 0, {1,2} -> 1
    assert best_of_n_weights([1.0, 1.0, 0.0], 2).tolist() == pytest.approx([0.5, 0.5, 0.0])
    rng = random.Random(0)
    sel = [rng.choice([0.0, 1.0, 2.0, 3.0, 4.0]) for _ in range(7)]
    val = [rng.random() for _ in range(7)]
    for n in range(1, 8):
        assert float(best_of_n_weights(sel, n) @ torch.tensor(val, dtype=torch.float64).numpy()) == pytest.approx(
            brute_force(sel, val, n), abs=1e-12
        )


def test_kl_and_sizes():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    assert bon_sizes(64) == [1, 2, 4, 8, 16, 32, 64] and bon_sizes(6) == [1, 2, 4, 6]


def test_a_proxy_that_rewards_an_exploit_over_optimises():
    # proxy = i; gold = i up to the exploit, where the two highest-proxy samples have gold 0
    proxy = [[float(i) for i in range(8)]] * 3
    gold = [[0.0, 1, 2, 3, 4, 5, 0, 0]] * 3
    points, over = best_of_n_curve(proxy, gold)
    assert [p.n for p in points] == [1, 2, 4, 8]
    for p in points:
        assert p.gold == pytest.approx(brute_force(proxy[0], gold[0], p.n))
        assert p.kl == pytest.approx(best_of_n_kl(p.n)) and p.gold_se == pytest.approx(0.0, abs=1e-12)
    assert [p.proxy for p in points] == sorted(p.proxy for p in points)  # the proxy keeps rising
    assert points[0].gold == pytest.approx(15 / 8) and points[-1].gold == 0.0
    assert over.overoptimised and over.peak_step == 2 and over.peak_kl == pytest.approx(best_of_n_kl(2))
    assert over.fit is not None and over.fit.form == "bon"


def test_overopt_command_writes_the_curve_the_report_plots(tmp_path, tiny_dir, monkeypatch, capsys):
    from fault_helpers import run_cli, run_cli_output
    from preflab.evaluation.report import build_report
    from preflab.evaluation.result import EvalResult
    from preflab.models import load_reward_model, load_tokenizer

    tok = load_tokenizer(str(tiny_dir))
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        run = tmp_path / f"rm{seed}"
        load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id).save_pretrained(run / "final")
        tok.save_pretrained(run / "final")
        runs.append(run)
    rows = [
        {
            "prompt": f"q{j}",
            "completions": [f"answer {i}" for i in range(4)],
            "gold_scores": [0.1 * i for i in range(4)],
        }
        for j in range(3)
    ]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run_cli_output(["overopt", str(tmp_path / "s.jsonl"), "--proxy", str(runs[0])], monkeypatch, capsys)
    assert code == 0, out
    res = EvalResult.load(runs[0] / "eval" / "overopt.json")
    over = res.overoptimisation
    assert [p.step for p in over.points] == [1, 2, 4]
    assert over.points[0].gold == pytest.approx(0.15)  # best-of-1 = the mean gold
    assert [p.kl for p in over.points] == pytest.approx([best_of_n_kl(n) for n in (1, 2, 4)])
    html = build_report(runs[0]).path.read_text()
    assert "Over-optimisation: gold vs proxy reward" in html
    # an ensemble, with and without a penalty from one scoring pass: one file each; λ = 0 selects by the mean
    code, out, _ = run_cli_output(
        [
            "overopt",
            str(tmp_path / "s.jsonl"),
            "--proxy",
            str(runs[0]),
            "--proxy",
            str(runs[1]),
            "--penalty",
            "0",
            "--penalty",
            "1",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, out
    plain = EvalResult.load(runs[0] / "eval" / "overopt_ensemble.json").overoptimisation
    penalised = EvalResult.load(runs[0] / "eval" / "overopt_ensemble_penalty1.json").overoptimisation
    assert plain.points[0].gold == pytest.approx(0.15) and penalised.points[0].gold == pytest.approx(0.15)
    html = build_report(runs[0]).path.read_text()
    assert html.count("gold and proxy reward vs KL") == 3  # one plot per curve
    # bad input: samples without gold scores; more n than samples; a penalty without an ensemble
    (tmp_path / "nogold.jsonl").write_text(json.dumps({"prompt": "q", "completions": ["a", "b"]}) + "\n")
    code, line = run_cli(monkeypatch, capsys, "overopt", str(tmp_path / "nogold.jsonl"), "--proxy", str(runs[0]))
    assert code == 2 and "row 0, field 'gold_scores': no gold scores" in line
    code, line = run_cli(
        monkeypatch, capsys, "overopt", str(tmp_path / "s.jsonl"), "--proxy", str(runs[0]), "--n-max", "8"
    )
    assert code == 2 and "best-of-8 needs 8 completions per prompt" in line
    code, line = run_cli(
        monkeypatch, capsys, "overopt", str(tmp_path / "s.jsonl"), "--proxy", str(runs[0]), "--penalty", "1"
    )
    assert code == 2 and "field 'penalty'" in line
