"""``preflab train CONFIG.yaml --set k=v`` and the config sections' validation (errors name file, line, key)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.config import load_config
from preflab.data import save_records
from preflab.errors import ConfigError
from preflab.objectives import get_objective
from preflab.training.resolve import reference_mode
from test_training_utils import synthetic_pairs

RECIPE = """\
seed: 1
output_dir: {out}
model:
  name_or_path: {model}
data:
  path: {data}
  eval_fraction: 0.25
objective:
  name: dpo
  params:
    beta: 0.2
lora:
  enabled: true
  r: 4
train:
  batch_size: 2
  max_steps: 3
  lr: 1.0e-3
  bf16: false
  progress: false
  eval_every: 2
"""


def test_train_command_runs_a_recipe(tmp_path, tiny_dir):
    data = save_records(synthetic_pairs(8), tmp_path / "prefs.jsonl")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(RECIPE.format(out=tmp_path / "run", model=tiny_dir, data=data))
    result = CliRunner().invoke(app, ["train", str(cfg), "--set", "train.max_steps=2", "--set", "train.layout=packed"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert result.stdout.strip().endswith(str(run / "final"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in rows] == [(1, "train"), (2, "train"), (2, "eval")]
    resolved = load_config(run / "config.yaml")
    assert (resolved.train.max_steps, resolved.train.layout, resolved.objective.params) == (2, "packed", {"beta": 0.2})

    # a LoRA run's final/ is its adapter; sample and eval read it as the trained model (base + adapter, merged)
    assert (run / "final" / "adapter_config.json").is_file() and not (run / "final" / "config.json").exists()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nsay hi\n", encoding="utf-8")
    samples = tmp_path / "samples.jsonl"
    args = ["sample", "-m", str(run / "final"), "--prompts", str(prompts), "--max-new-tokens", "4", "-o", str(samples)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert len(samples.read_text().splitlines()) == 2
    eval_cfg = tmp_path / "eval.yaml"
    eval_cfg.write_text(
        f"output_dir: {run}\nmodel:\n  name_or_path: {tiny_dir}\n"
        "eval:\n  suite: default\n  n_prompts: 4\n  max_new_tokens: 4\n  n_bootstrap: 20\n  lc_bootstrap: 0\n"
        "  bf16: false\n  kl: false\n"
    )
    out = CliRunner().invoke(app, ["eval", str(eval_cfg), "--no-report"])
    assert out.exit_code == 0, out.output
    from preflab.evaluation.result import EvalResult

    res = EvalResult.load(run / "eval" / "policy_vs_reference.json")
    assert res.win_rate.n == 4 and res.meta["policy"] == str(run / "final")


@pytest.mark.parametrize(
    ("yaml_text", "message", "line"),
    [
        (
            "objective:\n  name: dpo\n  params:\n    bta: 0.1\n",
            "unknown parameter 'bta' of objective 'dpo'; did you mean 'beta'",
            3,
        ),
        ("objective:\n  name: dpo\n  params:\n    beta: -1\n", "parameter 'beta': must be a finite number > 0", 3),
        ("objective:\n  name: dpoo\n", "unknown objective 'dpoo'; did you mean 'dpo'", 2),
        ("train:\n  lr: 0.1\n  batch_sise: 4\n", "unknown key 'train.batch_sise'; did you mean 'train.batch_size'", 3),
        ("train:\n  layout: zigzag\n", "invalid value for 'train.layout'", 2),
    ],
)
def test_config_errors_name_the_line_and_key(tmp_path, yaml_text, message, line):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert err.value.file == str(path) and err.value.line == line


def test_bad_config_is_a_one_line_error_from_the_cli(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("objective:\n  name: dpo\n  params: {bta: 1}\n")
    result = CliRunner().invoke(app, ["train", str(path)])
    assert isinstance(result.exception, ConfigError)  # preflab.cli.main prints it on one line, exit code 2


def test_reference_resolution():
    dpo, simpo = get_objective("dpo"), get_objective("simpo")
    assert reference_mode("auto", dpo, lora=True, schedule="offline") == "adapters_disabled"
    assert reference_mode("auto", dpo, lora=False, schedule="offline") == "frozen_copy"
    assert reference_mode("cached", dpo, lora=False, schedule="offline") == "cached"
    assert reference_mode("auto", simpo, lora=True, schedule="offline") == "none"
    with pytest.raises(ConfigError, match="needs lora"):
        reference_mode("adapters_disabled", dpo, lora=False, schedule="offline")
    with pytest.raises(ConfigError, match="needs a reference"):
        reference_mode("none", dpo, lora=False, schedule="offline")
