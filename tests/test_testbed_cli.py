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
