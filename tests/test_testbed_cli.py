"""``preflab testbed run`` / ``solve``: the table, the results file and the convergence plot."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from preflab.cli import app, main


def test_testbed_run_prints_the_table_and_writes_the_plot(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "testbed",
            "run",
            "--game",
            "cyclic",
            "--algorithms",
            "dpo,inpo,nash_mp",
            "--beta",
            "0.2",
            "--iterations",
            "30",
            "--out",
            str(out),
        ],
        env={"COLUMNS": "160"},
    )
    assert res.exit_code == 0, res.output
    for name in ("dpo", "inpo", "nash_mp", "exploit.", "KL to ref", "iters < 0.001"):
        assert name in res.output
    png = (out / "convergence.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    results = {r["algorithm"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert results["nash_mp"]["distance"] < 1e-6
    assert results["inpo"]["distance"] < 1e-3
    assert results["inpo"]["iterations_to_tol"] is not None
    assert results["dpo"]["distance"] > 0.1 and results["dpo"]["iterations_to_tol"] is None


def test_testbed_solve_lists_the_exact_answers():
    res = CliRunner().invoke(app, ["testbed", "solve", "--game", "two_group", "--beta", "0.3"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "max-min policy" in res.output and "regularised Nash" in res.output


def test_unknown_algorithm_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["preflab", "testbed", "run", "--algorithms", "inpoo", "--iterations", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'inpo'" in err and "Traceback" not in err


def test_testbed_run_with_an_objective_records_it_and_its_claim(tmp_path):
    """``--objective ipo`` trains iterative IPO and online IPO; results.json names each objective with the
    claim of that (algorithm, objective) pair, "not checked" where no test checks one."""
    from preflab.algorithms import VARIANTS

    out = tmp_path / "run"
    args = ["testbed", "run", "-g", "cyclic", "-a", "iterative_dpo,online_dpo", "--beta", "10", "--target", "minimax"]
    res = CliRunner().invoke(app, [*args, "--objective", "ipo", "--iterations", "800", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "iterative_dpo + ipo" in res.output and "online_dpo + ipo" in res.output
    results = {r["algorithm"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    it = results["iterative_dpo"]
    assert (it["objective"], it["guarantee"]) == ("ipo", "average")
    assert it["claim"] == VARIANTS[("iterative_dpo", "ipo")].claim and it["verified_by"].endswith("minimax_winner")
    assert it["distance"] < 1e-2 and it["exploitability"] < 5e-3  # the average iterate: the minimax winner
    assert results["online_dpo"]["claim"] == VARIANTS[("online_dpo", "ipo")].claim
    res = CliRunner().invoke(
        app, [*args[:5], "iterative_dpo", "--objective", "hinge", "--iterations", "2", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "results.json").read_text())["results"]
    assert (row["objective"], row["claim"], row["verified_by"]) == ("hinge", "not checked", None)
    res = CliRunner().invoke(
        app, [*args[:5], "iterative_dpo", "--objective", "orpo", "--iterations", "2", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output  # reference-free: the runner builds no reference


@pytest.mark.parametrize(
    ("algorithms", "objective", "message"),
    [
        (
            "iterative_dpo",
            "sppo",
            "error: field '--objective': algorithm 'iterative_dpo' trains one of the pair objectives dpo, cdpo, rdpo, "
            "ipo, hinge, rpo, simpo, orpo on rounds: sample from π_t, judge, then fit the round's loss; objective "
            "'sppo' is the loss of algorithm 'sppo' on this schedule; set algorithm: sppo\n",
        ),
        (
            "online_dpo,inpo",
            "ipo",
            "error: field '--objective': --objective 'ipo' contradicts algorithm 'inpo', whose objective is 'inpo'; "
            "drop --objective\n",
        ),
        ("iterative_dpo", "gpm", "error: field '--objective': algorithm 'iterative_dpo' trains one of the pair"),
    ],
)
def test_an_objective_an_algorithm_cannot_take_is_a_one_line_error_exit_2(
    monkeypatch, capsys, algorithms, objective, message
):
    argv = ["preflab", "testbed", "run", "-a", algorithms, "--objective", objective, "--iterations", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
