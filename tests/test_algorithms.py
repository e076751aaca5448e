"""The algorithm table is the only list of algorithms: the objectives, the testbed and the LM trainer agree with
it, and ``preflab algorithms`` prints it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from preflab import algorithms as table
from preflab.algorithms import ALGORITHMS, OBJECTIVE_ONLY, get_algorithm, objective_choices
from preflab.cli import app, main
from preflab.errors import ConfigError
from preflab.objectives import REGISTRY
from preflab.testbeds import algorithms as testbed
from preflab.training.lm_algorithms import LM_REFERENCES, LM_SCHEDULES
from preflab.training.resolve import DATA_KIND_OF_INPUTS

ROOT = Path(__file__).resolve().parent.parent
LM_ALGORITHMS = {
    "dpo",
    "cdpo",
    "rdpo",
    "ipo",
    "hinge",
    "rpo",
    "simpo",
    "orpo",
    "kto",
    "online_dpo",
    "iterative_dpo",
    "sppo",
    "inpo",
    "dno",
    "bt_reward",
    "nash_md",
    "nash_mp",
    "spo",
    "xpo",
    "pro",
    "lipo",
    "ppo",
    "rloo",
    "reinforce_pp",
    "remax",
    "grpo",
    "gpm",
    "maxmin_em",
    "sft",
}


def test_every_objective_is_an_algorithms_loss_or_marked_objective_only():
    used = {a.objective for a in ALGORITHMS.values()}
    assert used <= set(REGISTRY)  # every algorithm's objective is registered
    assert set(OBJECTIVE_ONLY) <= set(REGISTRY)
    assert not used & set(OBJECTIVE_ONLY)
    assert used | set(OBJECTIVE_ONLY) == set(REGISTRY)


def test_schedules_are_known_and_reference_free_objectives_have_no_reference():
    for a in ALGORITHMS.values():
        assert a.data in table.DATA_SCHEDULES and a.reference in table.REFERENCE_SCHEDULES, a.name
        assert a.guarantee in ("last", "average") and a.runs and a.runs <= {table.LM, table.TESTBED}
        assert a.model in table.MODELS, a.name
        assert (a.reference == table.NONE) == (not REGISTRY[a.objective].needs_ref), a.name


def test_the_testbed_runs_exactly_the_tables_testbed_algorithms():
    marked = {name for name, a in ALGORITHMS.items() if a.on_testbed}
    assert set(testbed.ALGORITHMS) == marked
    # the reward-model fits run on the LM only; their objective's testbed test is their claim's verified_by
    assert set(ALGORITHMS) - marked == {name for name, a in ALGORITHMS.items() if a.model != table.POLICY}
    assert all(testbed.ALGORITHMS[name] is ALGORITHMS[name] for name in marked)  # one definition each
    pairs = {(a.data, a.reference) for a in ALGORITHMS.values() if a.on_testbed}
    # online_dpo's objective choice brings its objective's reference (online SimPO, ORPO: none)
    pairs |= {(a.data, c.reference) for a in ALGORITHMS.values() if a.on_testbed for c in objective_choices(a).values()}
    assert pairs == set(testbed.RUNNERS)  # every runner is used, every testbed algorithm has one


def test_the_lm_trainer_runs_exactly_the_tables_lm_algorithms():
    marked = {name for name, a in ALGORITHMS.items() if a.on_lm}
    buildable = {
        name
        for name, a in ALGORITHMS.items()
        if a.data in LM_SCHEDULES
        and a.reference in LM_REFERENCES
        and REGISTRY[a.objective].inputs in DATA_KIND_OF_INPUTS
    }
    assert marked == buildable == LM_ALGORITHMS


def test_every_claim_links_to_an_existing_testbed_test():
    for a in ALGORITHMS.values():
        path, _, test = a.verified_by.partition("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^def {re.escape(test)}\(", source, re.M), a.verified_by


def test_unknown_algorithm_names_the_closest():
    with pytest.raises(ConfigError) as err:
        get_algorithm("nash_mdd")
    assert (
        str(err.value)
        == "field 'algorithm': unknown algorithm 'nash_mdd'; did you mean 'nash_md'? (see `preflab algorithms`)"
    )


def _render(columns: int) -> str:
    res = CliRunner().invoke(app, ["algorithms"], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return res.output


def test_algorithms_command_lists_every_algorithm_and_where_it_runs(monkeypatch):
    monkeypatch.setattr(Console, "is_terminal", property(lambda self: False))
    out = _render(80)
    assert max(len(line) for line in out.splitlines()) <= 80
    for name, a in ALGORITHMS.items():
        row = next(line for line in out.splitlines() if line.split() and line.split()[0] == name)
        runs = row.split()[1:3]
        assert ("LM" in runs) == a.on_lm and ("TB" in runs) == a.on_testbed, row
    assert re.search(r"^sppo\s+LM TB\s+=\s+iterative\s+previous", out, re.M)
    assert re.search(r"^iterative_dpo\s+LM TB\s+dpo\s+iterative", out, re.M)
    assert re.search(r"^online_dpo\s+LM TB\s+=\*\s+online pairs\s+fixed", out, re.M)
    # the open row says which objectives objective.name may pick, and what happens to the reference
    note = " ".join(out[out.index("* online_dpo:") :].split())
    assert note.startswith(
        "* online_dpo: or objective.name = any of dpo, cdpo, rdpo, ipo, hinge, rpo, simpo, orpo (e.g. algorithm: "
        "online_dpo + objective: {name: ipo} is online IPO); its reference follows the objective (none for simpo, orpo)"
    )
    assert re.search(r"^bt_reward\s+LM\s+=\s+offline pairs", out, re.M) and "→ reward" in out


def test_algorithms_json_is_the_table():
    res = CliRunner().invoke(app, ["algorithms", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert list(rows) == list(ALGORITHMS)
    assert rows["nash_md"] == {
        "name": "nash_md",
        "runs": ["lm", "testbed"],
        "objective": "nash_md",
        "data": "policy_gradient",
        "reference": "geometric_mixture",
        "model": "policy",
        "claim": ALGORITHMS["nash_md"].claim,
        "guarantee": "last",
        "verified_by": ALGORITHMS["nash_md"].verified_by,
        "paper": "Munos et al. 2023, Nash-MD",
        "params": {},
        "testbed_defaults": {"iterations": 150, "inner_steps": 10, "eta": 0.01},
        "objective_choice": [],
    }
    assert rows["online_dpo"]["objective_choice"] == ["dpo", "cdpo", "rdpo", "ipo", "hinge", "rpo", "simpo", "orpo"]
    assert rows["dpo"]["runs"] == ["lm", "testbed"]


def test_train_with_a_testbed_only_algorithm_is_a_one_line_error_exit_2(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("seed: 0\nalgorithm: maxmin\n")
    monkeypatch.setattr(sys, "argv", ["preflab", "train", str(cfg)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {cfg}, line 2, field 'algorithm': algorithm 'maxmin' (group_dual data, fixed "
        "reference) has no language-model schedule yet; it runs on the exact testbed only "
        "(preflab testbed run -a maxmin)\n"
    )
