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
from preflab.algorithms import ALGORITHMS, OBJECTIVE_ONLY, get_algorithm, objective_choices, with_objective
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


def _variant_rows(a):
    return [with_objective(a, objective) for objective in objective_choices(a)]


def test_objective_choices_keep_the_rows_reference_and_carry_their_own_claims():
    """online_dpo / iterative_dpo take every offline pair objective of the table; the chosen objective keeps the
    row's reference schedule (π_ref / π_t) unless it takes none; its claim is its Variant's or "not checked"."""
    pair_objectives = [
        a.objective for a in ALGORITHMS.values() if a.data == table.OFFLINE_PAIRS and a.model == "policy"
    ]
    assert pair_objectives == ["dpo", "cdpo", "rdpo", "ipo", "hinge", "rpo", "simpo", "orpo"]
    assert list(objective_choices(ALGORITHMS["online_dpo"])) == pair_objectives
    assert list(objective_choices(ALGORITHMS["iterative_dpo"])) == pair_objectives[1:]  # its own is dpo
    for name, reference in (("online_dpo", table.FIXED), ("iterative_dpo", table.PREVIOUS_ITERATE)):
        for v in _variant_rows(ALGORITHMS[name]):
            assert (v.name, v.data) == (name, ALGORITHMS[name].data)
            assert v.reference == (table.NONE if v.objective in ("simpo", "orpo") else reference), v
            checked = table.VARIANTS.get((name, v.objective))
            assert v.claim == (checked.claim if checked else table.NOT_CHECKED)
            assert v.claim != ALGORITHMS[name].claim or v.objective == "dpo"  # never the row's claim by default
    assert set(table.VARIANTS) == {
        ("online_dpo", "dpo"),
        ("online_dpo", "ipo"),
        ("iterative_dpo", "ipo"),
        ("iterative_dpo", "simpo"),
    }
    assert with_objective(ALGORITHMS["iterative_dpo"], "ipo").guarantee == "average"
    assert with_objective(ALGORITHMS["iterative_dpo"], "hinge").claim == "not checked"
    with pytest.raises(ConfigError, match=r"objective 'sppo' is the loss of algorithm 'sppo'.*; set algorithm: sppo$"):
        with_objective(ALGORITHMS["iterative_dpo"], "sppo")


def test_the_testbed_runs_exactly_the_tables_testbed_algorithms():
    marked = {name for name, a in ALGORITHMS.items() if a.on_testbed}
    assert set(testbed.ALGORITHMS) == marked
    # the reward-model fits run on the LM only; their objective's testbed test is their claim's verified_by
    assert set(ALGORITHMS) - marked == {name for name, a in ALGORITHMS.items() if a.model != table.POLICY}
    assert all(testbed.ALGORITHMS[name] is ALGORITHMS[name] for name in marked)  # one definition each
    pairs = {(a.data, a.reference) for a in ALGORITHMS.values() if a.on_testbed}
    # an objective choice keeps the row's reference schedule, or none (online / iterative SimPO, ORPO)
    pairs |= {(v.data, v.reference) for a in ALGORITHMS.values() if a.on_testbed for v in _variant_rows(a)}
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
    for a in [*ALGORITHMS.values(), *table.VARIANTS.values()]:
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
    assert re.search(r"^iterative_dpo\s+LM TB\s+dpo\*\s+iterative", out, re.M)
    assert re.search(r"^online_dpo\s+LM TB\s+=\*\s+online pairs\s+fixed", out, re.M)
    # an open row says which objectives objective.name may pick, the reference, and each pair's own claim
    note = " ".join(out[out.index("* online_dpo:") :].split())
    assert note.startswith(
        "* online_dpo: or objective.name = any of dpo, cdpo, rdpo, ipo, hinge, rpo, simpo, orpo (e.g. algorithm: "
        "online_dpo + objective: {name: ipo} is online IPO); reference: fixed, none for simpo, orpo. Claims: dpo: "
        f"{ALGORITHMS['online_dpo'].claim} cdpo: not checked rdpo: not checked ipo: β-regularised Nash"
    )
    note = " ".join(out[out.index("* iterative_dpo:") :].split())
    assert note.startswith(
        "* iterative_dpo: or objective.name = any of cdpo, rdpo, ipo, hinge, rpo, simpo, orpo (e.g. algorithm: "
        "iterative_dpo + objective: {name: ipo} is iterative IPO); reference: previous iterate, none for simpo, "
        "orpo. Claims: cdpo: not checked rdpo: not checked ipo: round t: Hedge"
    )
    assert note.endswith("orpo: not checked")
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
        "variants": [],
    }
    assert rows["online_dpo"]["objective_choice"] == ["dpo", "cdpo", "rdpo", "ipo", "hinge", "rpo", "simpo", "orpo"]
    assert rows["iterative_dpo"]["objective_choice"] == ["cdpo", "rdpo", "ipo", "hinge", "rpo", "simpo", "orpo"]
    variants = {v["objective"]: v for v in rows["iterative_dpo"]["variants"]}
    assert list(variants) == rows["iterative_dpo"]["objective_choice"]
    ipo = table.VARIANTS[("iterative_dpo", "ipo")]
    assert variants["ipo"] == {
        "objective": "ipo",
        "reference": "previous_iterate",
        "claim": ipo.claim,
        "guarantee": "average",
        "verified_by": ipo.verified_by,
    }
    assert variants["simpo"]["reference"] == "none" and variants["simpo"]["verified_by"].endswith("reference")
    assert variants["hinge"] == {
        "objective": "hinge",
        "reference": "previous_iterate",
        "claim": "not checked",
        "guarantee": "last",
        "verified_by": None,
    }
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
