"""The HTML report from a synthetic run directory, the result JSON round trip, and the CLI commands."""

import base64
import json
import math
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.errors import DataError
from preflab.evaluation import EvalResult, build_report, overoptimisation, ranking_accuracy
from preflab.evaluation.policies import evaluate_answers
from preflab.evaluation.run_files import read_metrics_series
from preflab.feedback import Judge

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class LengthJudge(Judge):
    name = "gold-stub"

    def score(self, prompt, response):
        return min(len(response) / 40.0, 1.0)

    def compare(self, prompt, a, b):
        d = self.score(prompt, a) - self.score(prompt, b)
        return 1 / (1 + math.exp(-8 * d))


def write_metrics(path, steps=60, bad_line=False):
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for s in range(1, steps + 1):
            rec = {
                "step": s,
                "split": "train",
                "loss": 0.69 * math.exp(-s / 30) + 0.05 * rng.random(),
                "rewards/margins": 0.02 * s + 0.05 * rng.normal(),
                "rewards/accuracies": min(0.5 + s / 100, 0.95),
                "kl": 0.004 * s,
                "tokens_per_s": 900.0,
            }
            fh.write(json.dumps(rec) + "\n")
            if s % 10 == 0:
                kl = 0.004 * s
                ev = {
                    "step": s,
                    "split": "eval",
                    "loss": 0.6 * math.exp(-s / 30),
                    "kl": kl,
                    "gold": 0.4 + np.sqrt(kl) * (1 - 2.0 * np.sqrt(kl)),
                    "proxy": 0.1 + 2 * np.sqrt(kl),
                }
                fh.write(json.dumps(ev) + "\n")
        if bad_line:
            fh.write('{"step": 61, "split": "train", "loss": 0.1\n')  # a half-written last line


def make_run(tmp_path, with_eval=True, bad_line=False):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    write_metrics(run / "metrics.jsonl", bad_line=bad_line)
    (run / "config.yaml").write_text("seed: 0\nmodel:\n  name_or_path: tiny\n")
    if with_eval:
        prompts = [f"Question {i}?" for i in range(30)]
        a = ["A longer, more complete answer " + "x" * (i % 7) for i in range(30)]
        b = ["Short answer" + "y" * (i % 3) for i in range(30)]
        fams = ["short" if i % 2 else "long" for i in range(30)]
        res = evaluate_answers(
            prompts,
            a,
            b,
            LengthJudge(),
            families=fams,
            n_bootstrap=100,
            lc_bootstrap=10,
            group_judges={"g1": LengthJudge()},
        )
        res.ranking = ranking_accuracy([-3, -4], [-5, -2], [-4, -4], [-4, -3], beta=0.1, true_margin=[1, 1])
        res.kl = None
        res.save_to_run(run)
    return run


def test_report_from_a_synthetic_run_has_every_section(tmp_path):
    run = make_run(tmp_path)
    rep = build_report(run)
    page = rep.path.read_text()
    assert rep.path == run / "report" / "report.html"
    for heading in (
        "Training curves",
        "Evaluation",
        "Win rate of policy over reference",
        "length-controlled win rate",
        "Null-model check",
        "Gold score per task family",
        "Per annotator group",
        "Ranking accuracy",
        "Over-optimisation",
        "Run configuration",
    ):
        assert heading in page, heading
    # self-contained: every image is an embedded PNG, nothing is fetched from the network
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4  # curves, win rates, gold per family, over-optimisation
    assert all(base64.b64decode(i).startswith(PNG_MAGIC) for i in images)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page
    names = sorted(p.name for p in rep.pngs)
    assert names == ["gold_policy_vs_reference.png", "overoptimisation.png", "training_curves.png", "win_rates.png"]
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in rep.pngs)
    # over-optimisation from metrics.jsonl: gold peaks at step 10 (KL .04 -> d=.2 is closest to d*=.25)
    assert "Over-optimisation table (from metrics.jsonl)" in page
    assert "over-optimised" in page
    assert rep.missing == []


def test_report_degrades_gracefully_and_says_what_is_missing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rep = build_report(empty)
    page = rep.path.read_text()
    assert rep.pngs == []
    assert "Missing or skipped parts" in page
    assert any("no metrics.jsonl" in m for m in rep.missing)
    assert any("no eval/*.json" in m for m in rep.missing)
    assert not any("over-optimisation" in m for m in rep.missing)  # a run need not produce it: a note instead
    assert "No over-optimisation plot" in page
    assert "no config.yaml" in page


def test_half_written_metrics_line_is_skipped_and_counted(tmp_path):
    run = make_run(tmp_path, with_eval=False, bad_line=True)
    log = read_metrics_series(run / "metrics.jsonl")
    assert log.n_records == 66 and len(log.skipped) == 1 and log.skipped[0][0] == 67
    assert log.get("loss", "eval")[0] == [10, 20, 30, 40, 50, 60]
    rep = build_report(run)
    assert any("skipped 1 unreadable line(s) (line 67" in m for m in rep.missing)


def test_broken_eval_file_is_reported_not_fatal(tmp_path):
    run = make_run(tmp_path, with_eval=False)
    (run / "eval" / "broken.json").write_text("{not json")
    (run / "eval" / "other.json").write_text('{"kind": "something-else"}')
    rep = build_report(run)
    assert any("broken.json skipped" in m and "line 1" in m for m in rep.missing)
    assert any("other.json skipped" in m for m in rep.missing)


def test_eval_result_json_round_trip(tmp_path):
    run = make_run(tmp_path)
    path = run / "eval" / "policy_vs_reference.json"
    data = json.loads(path.read_text())
    assert data["kind"] == "preflab.eval"
    res = EvalResult.load(path)
    assert res.win_rate.n == 30 and len(res.win_rate.per_prompt) == 30
    assert res.ranking.policy_logprob.value == 0.5
    assert [g.family for g in res.gold] == ["long", "short", "all"]
    res.overoptimisation = overoptimisation([{"kl": 0, "gold": 0.1}, {"kl": 1, "gold": 0.3, "proxy": 1.0}])
    res.save(tmp_path / "again.json")
    assert EvalResult.load(tmp_path / "again.json").to_dict() == res.to_dict()
    with pytest.raises(DataError, match="not a preflab evaluation"):
        EvalResult.from_dict({"kind": "x"})


def test_report_cli(tmp_path):
    run = make_run(tmp_path)
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'report.html'} (4 plots)" in result.output
    assert (out / "training_curves.png").is_file()


def test_final_values_table_reads_small_numbers_and_hides_timestamps(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        {"step": s, "split": "train", "time": 1796410146.9 + s, "lr": 5e-05 * s, "loss": 0.69 - 0.01 * s}
        for s in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = build_report(run).path.read_text()
    table = page[page.index("Final values of every logged metric") :]
    assert "<td>lr</td>" in table and "0.0001" in table and "5e-05" in table
    assert "<td>time</td>" not in table and "1796410146" not in table


def test_each_evaluation_shows_the_settings_it_ran_with(tmp_path):
    run = tmp_path / "run"
    res = EvalResult(
        name="e1",
        meta={
            "sampling": {"max_new_tokens": 64, "temperature": 0.7, "top_p": 1.0},
            "n_prompts": 200,
            "length_unit": "tokens",
        },
    )
    res.save_to_run(run)
    page = build_report(run).path.read_text()
    assert "settings: max new tokens 64, temperature 0.7, top p 1.0, n prompts 200, length unit tokens" in page
