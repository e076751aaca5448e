"""``preflab dpo --model M --dataset D ...``: TRL-style one-line training on a local model and dataset."""

from __future__ import annotations

import json

import yaml

from fault_helpers import run_cli, run_cli_output
from preflab.cli.oneline import config_overrides, oneline_algorithms
from preflab.data import save_records
from test_training_utils import synthetic_pairs


def test_every_offline_lm_algorithm_has_a_command_and_no_online_one_does():
    names = oneline_algorithms()
    assert {"dpo", "ipo", "kto", "simpo", "orpo", "bt_reward", "sft"} <= set(names)
    assert not {"online_dpo", "sppo", "iterative_dpo"} & set(names)


def test_flags_map_to_the_keys_of_the_coming_from_trl_table():
    base, sets = config_overrides(
        "dpo",
        {"model": "m", "dataset": "d.jsonl", "beta": 0.3, "lora": False, "eval_split": "test", "epochs": 2.0},
        ["train.lr=1e-4"],
    )
    assert base.name == "dpo.yaml"
    assert sets == [
        "model.name_or_path=m",
        "data.path=d.jsonl",
        "data.eval_split=test",
        "train.epochs=2.0",
        "objective.params.beta=0.3",
        "lora.enabled=false",
        "data.eval_fraction=0",
        "train.max_steps=null",
        "train.lr=1e-4",
    ]
    base, sets = config_overrides("hinge", {}, [])  # no recipe of its own: DPO's, with the algorithm swapped
    assert (base.name, sets[:2]) == ("dpo.yaml", ["algorithm=hinge", "objective.params={}"])
    assert config_overrides("bt_reward", {}, [])[0].name == "reward_model.yaml"


def test_print_config_takes_trl_spellings(monkeypatch, capsys, tmp_path):
    code, out, _ = run_cli_output(
        [
            "ipo",
            "--model_name_or_path",
            "my-model",
            "--dataset_name",
            "prefs.jsonl",
            "--learning_rate",
            "2e-5",
            "--use_peft",
            "--lora_r",
            "8",
            "--max_steps",
            "7",
            "--print-config",
        ],
        monkeypatch,
        capsys,
    )
    cfg = yaml.safe_load(out)
    assert code == 0
    assert (cfg["algorithm"], cfg["model"]["name_or_path"], cfg["data"]["path"]) == ("ipo", "my-model", "prefs.jsonl")
    assert (cfg["train"]["lr"], cfg["train"]["max_steps"], cfg["lora"]["enabled"], cfg["lora"]["r"]) == (
        2e-5,
        7,
        True,
        8,
    )


def test_one_command_trains_a_local_model_on_a_jsonl_file_and_writes_the_report(
    monkeypatch, capsys, tmp_path, tiny_dir
):
    data = save_records(synthetic_pairs(12), tmp_path / "prefs.jsonl")
    out = tmp_path / "run"
    code, stdout, err = run_cli_output(
        [
            "dpo",
            "--model",
            str(tiny_dir),
            "--dataset",
            str(data),
            "--output-dir",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "2",
            "--grad-accum",
            "1",
            "--lr",
            "1e-3",
            "--set",
            "train.bf16=false",
            "--set",
            "train.progress=false",
            "--set",
            "lora.r=4",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == str(out / "final")
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in steps][-1] == (2, "eval")  # the recipe's held-out prompts
    assert "rewards/accuracies" in steps[-1]
    assert (out / "report" / "index.html").is_file() or any((out / "report").glob("*.html"))
    assert f"report {out / 'report'}" in err


def test_bad_one_line_inputs_are_one_line_errors(monkeypatch, capsys, tmp_path, tiny_dir):
    code, line = run_cli(
        monkeypatch,
        capsys,
        "dpo",
        "--model",
        str(tiny_dir),
        "--dataset",
        str(tmp_path / "missing.jsonl"),
        "--output-dir",
        str(tmp_path / "r"),
    )
    assert code == 2 and "missing.jsonl" in line
    code, line = run_cli(monkeypatch, capsys, "dpo", "--beta", "-1", "--print-config")
    assert code == 2 and "beta" in line


def test_sft_in_one_line_trains_on_demonstrations_and_refuses_beta(monkeypatch, capsys, tmp_path, tiny_dir):
    from preflab.data import Demonstration

    demos = [Demonstration(p.prompt, p.chosen) for p in synthetic_pairs(12)]
    data = save_records(demos, tmp_path / "demos.jsonl")
    out = tmp_path / "run"
    args = ["sft", "--model", str(tiny_dir), "--dataset", str(data), "--output-dir", str(out), "--max-steps", "2"]
    args += ["--batch-size", "2", "--set", "train.bf16=false", "--set", "train.progress=false", "--set", "lora.r=4"]
    code, stdout, err = run_cli_output(args, monkeypatch, capsys)
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == str(out / "final")
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in steps][-1] == (2, "eval") and "num_tokens" in steps[-1]
    assert f"report {out / 'report'}" in err
    code, line = run_cli(monkeypatch, capsys, "sft", "--beta", "0.1", "--print-config")
    assert code == 2 and line == (
        "error: field 'beta': algorithm 'sft' has no β (objective 'sft' takes per_sequence); drop --beta "
        "(--set objective.params.KEY=VALUE sets its parameters)"
    )
