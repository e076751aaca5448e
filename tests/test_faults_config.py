"""Fault injection, issue 23 items 6, 10 and 11: bad configs, bad weights, tampered run files, unsafe names and
paths, markup in paths, file modes, and eval prompts labelled with a family or group. Each case reproduces a
defect seen on main and asserts the fixed behaviour (a one-line error naming the field / row, or recovery)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.config import load_config
from preflab.data import PreferencePair, load_preferences, save_records
from preflab.errors import ConfigError, DataError, OutputError, PreflabError
from preflab.evaluation import EvalResult, build_report
from preflab.evaluation.policies import LabeledPrompt, evaluate_answers
from preflab.evaluation.runner import load_prompts, run_eval
from test_training_utils import LengthJudge, make_cfg, synthetic_pairs

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m preflab ARGS`` in a subprocess (the one-line printing lives in ``preflab.cli.main``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "preflab", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ---------------------------------------------------------------- item 10: config validation


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "0", "-1e-4"])
def test_lr_must_be_finite_and_positive(tmp_path, value):
    path = tmp_path / "run.yaml"
    path.write_text(f"seed: 1\ntrain:\n  lr: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "invalid value for 'train.lr'" in str(err.value) and err.value.line == 3
    with pytest.raises(ConfigError, match="'train.lr'"):
        load_config(None, [f"train.lr={value}"])


def test_duplicate_yaml_key_is_an_error_naming_key_and_lines(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 0.001\n  batch_size: 2\n  lr: 0.002\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.line == 4 and "duplicate key 'lr' (first given on line 2)" in str(err.value)
    path.write_text("base: &b {lr: 1}\ntrain:\n  <<: *b\n  lr: 0.002\n")  # a merge key may be overridden
    with pytest.raises(ConfigError, match="unknown key 'base'"):  # (no duplicate error; 'base' is unknown)
        load_config(path)


def test_set_errors_cite_the_flag_not_a_line_of_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\ntrain:\n  lr: 0.001\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["train.lr=.inf"])
    assert str(err.value).startswith("--set train.lr=.inf: invalid value for 'train.lr'")
    assert err.value.file is None and err.value.line is None
    with pytest.raises(ConfigError, match=r"^--set train.lrr=3: unknown key 'train.lrr'; did you mean 'train.lr'"):
        load_config(path, ["train.lrr=3"])
    with pytest.raises(ConfigError) as err:  # the file's own error still cites its line
        path.write_text("seed: 1\ntrain:\n  lr: .inf\n")
        load_config(path, ["seed=2"])
    assert err.value.line == 3


def test_unparsable_set_value_is_one_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 1\n")
    line = one_line_error(cli("config", "show", str(path), "--set", "train.lr=["))
    assert line.startswith("error: --set train.lr=[: value is not valid YAML")


def test_row_weight_out_of_range_names_file_line_and_field(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b", "weight": 1.0},
        {"prompt": "q2", "chosen": "a", "rejected": "b", "weight": 1e300},
        {"prompt": "q3", "chosen": "a", "rejected": "b", "weight": 2e6},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_preferences(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 2, "weight")
    assert "above 1e+06" in str(err.value)
    skipped = load_preferences(path, on_bad_row="skip")
    assert len(skipped.records) == 1 and skipped.skipped["weight_out_of_range"] == 2


def test_weights_given_in_python_are_checked_and_all_zero_is_refused(tmp_path, tiny):
    from preflab.training import train

    model, tok = tiny
    bad = synthetic_pairs(4)
    bad[2].weight = float("inf")
    with pytest.raises(DataError) as err:
        train(make_cfg(tmp_path / "a", "train.max_steps=1"), records=bad, model=model, tokenizer=tok)
    assert (err.value.row, err.value.field) == (2, "weight")
    zero = [PreferencePair(p.prompt, p.chosen, p.rejected, weight=0.0) for p in synthetic_pairs(4)]
    with pytest.raises(DataError, match="every row has weight 0"):
        train(make_cfg(tmp_path / "b", "train.max_steps=1"), records=zero, model=model, tokenizer=tok)
    assert not (tmp_path / "b" / "config.yaml").exists()  # refused before the run directory was written


# ---------------------------------------------------------------- item 11: report, names, paths, markup, modes


def _eval_file(run: Path) -> Path:
    prompts = [f"Q{i}?" for i in range(12)]
    res = evaluate_answers(
        prompts,
        ["long answer " * (i % 3 + 1) for i in range(12)],
        ["short"] * 12,
        LengthJudge(),
        n_bootstrap=100,
        lc_bootstrap=10,
        null_check=False,
        name="tampered",
    )
    return res.save_to_run(run)


def test_report_escapes_every_value_from_run_files(tmp_path):
    run = tmp_path / "run"
    path = _eval_file(run)
    data = json.loads(path.read_text())
    script = "<script>alert(1)</script>"
    data["win_rate"]["n"] = script
    data["kl"] = {"kl": 0.1, "se": 0.01, "k3": 0.1, "k3_se": 0.01, "k2": 0.1, "n": script}
    data["win_rate"]["ci_low"] = script  # a string where a number belongs: shown as a dash, not a crash
    path.write_text(json.dumps(data))
    html = build_report(run).path.read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_eval_name_must_be_one_path_component(tmp_path):
    for name in ("../../X", "a/b", "..", ".hidden", "a\\b", ""):
        with pytest.raises(ConfigError, match="'eval.name'.*not a single file name"):
            load_config(None, [f"eval.name={name}"] if name else ["eval.name=''"])
    assert load_config(None, ["eval.name=policy_vs_ref-2.1"]).eval.name == "policy_vs_ref-2.1"
    with pytest.raises(DataError, match="not a single file name"):
        EvalResult(name="../../escape").save_to_run(tmp_path / "run")
    assert not (tmp_path / "escape.json").exists()


def test_user_path_errors_are_one_line(tmp_path):
    data = save_records(synthetic_pairs(3), tmp_path / "d.jsonl")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    checks = [
        (["data", "convert", str(data), str(tmp_path / "adir"), "--to", "pairs"], "output is a directory"),
        (
            ["data", "convert", str(data), str(tmp_path / "afile" / "x.jsonl"), "--to", "pairs"],
            "is a file, not a folder",
        ),
        (
            ["data", "inspect", str(data), "--tokenizer", "none", "--report", str(tmp_path / "adir")],
            "--report is a directory",
        ),
        (["report", str(tmp_path), "--out", str(tmp_path / "afile")], "report folder is a file"),
    ]
    for args, message in checks:
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, OutputError), (args, result.output)
        assert message in str(result.exception) and "\n" not in str(result.exception)
    line = one_line_error(cli("data", "convert", str(data), str(tmp_path / "adir"), "--to", "pairs"))
    assert str(tmp_path / "adir") in line


def test_output_dir_that_is_a_file_is_one_line(tmp_path, tiny):
    from preflab.pipelines.quickstart import Quickstart
    from preflab.training import train

    (tmp_path / "taken").write_text("x")
    model, tok = tiny
    with pytest.raises(OutputError, match="output_dir is a file"):
        train(make_cfg(tmp_path / "taken", "train.max_steps=1"), records=synthetic_pairs(2), model=model, tokenizer=tok)
    with pytest.raises(OutputError, match="is below .*taken, which is a file"):
        Quickstart(make_cfg(tmp_path / "taken" / "qs"))


def test_rich_markup_in_paths_is_printed_as_text(tmp_path, capsys):
    from preflab.cli.quickstart import print_summary
    from preflab.pipelines.quickstart import QuickstartResult, _log

    odd = tmp_path / "runs" / "qs_[/x]" / "[bold]report.html"
    print_summary(
        QuickstartResult(
            odd.parent,
            {"families": {"[red]fam": {"before": 0.1, "after": 0.2, "gain": 0.1, "gain_ci": [0.0, 0.2]}}},
            {},
            odd,
        )
    )
    _log(f"[prompts] reused from {odd}")
    out = capsys.readouterr()
    assert "qs_[/x]" in out.out.replace("\n", "") and "[red]fam" in out.out
    assert "[prompts] reused" in out.err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_result_files_get_normal_modes(tmp_path, umask):
    from preflab.feedback import PromptSamples, write_samples
    from preflab.files import atomic_write_text

    old = os.umask(umask)
    try:
        run = tmp_path / "run"
        written = [
            _eval_file(run),
            build_report(run).path,
            save_records(synthetic_pairs(2), run / "pairs.jsonl"),
            write_samples([PromptSamples("q", ["a", "b"])], run / "samples.jsonl"),
            atomic_write_text(run / "stages.json", "{}"),
        ]
    finally:
        os.umask(old)
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
    assert not list(run.rglob(".*.tmp"))


# ---------------------------------------------------------------- item 6: eval prompts with family / group


def test_eval_prompts_with_family_or_group_labels(tmp_path, tiny_dir):
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": f"Say {w}.", "group": g} for w, g in (("hi", "g1"), ("yes", "g2"), ("ok", "g1"))]
    rows += [{"prompt": "Name a fruit.", "family": "fruit"}, {"prompt": [{"role": "user", "content": "Hey"}]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_prompts(prompts)
    assert loaded[0] == LabeledPrompt("Say hi.", None, "g1") and loaded[3].family == "fruit"
    assert loaded[4] == [{"role": "user", "content": "Hey"}]
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.name_or_path={tiny_dir}",
            f"eval.prompts={prompts}",
            "eval.max_new_tokens=3",
            "eval.n_bootstrap=100",
            "eval.lc_bootstrap=10",
            "eval.null_check=false",
            "eval.kl=false",
            "eval.bf16=false",
        ],
    )
    result, path = run_eval(cfg, judge=LengthJudge())
    groups = {g.group: g.win_rate.n for g in result.groups.groups}
    assert groups == {"g1": 2, "g2": 1, "other": 2}
    assert [s["group"] for s in result.samples] == ["g1", "g2", "g1", "other", "other"]
    assert path == tmp_path / "run" / "eval" / "policy_vs_reference.json"
    assert "Per annotator group" in build_report(tmp_path / "run").path.read_text()


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": "q", "group": ["a"]}, "group"),
        ({"prompt": "", "family": "f"}, "prompt"),
        ({"prompt": 3, "group": "g"}, "prompt"),
    ],
)
def test_bad_labelled_prompt_rows_name_line_and_field(tmp_path, row, field):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(PreflabError) as err:
        load_prompts(path)
    assert (err.value.line, err.value.field) == (2, field)


def test_training_writes_weights_checkpoints_and_final_with_the_mode_open_would_give(tmp_path):
    """safetensors and mkstemp create files 0600; the run's model, checkpoint and reference files get 0666 less
    the umask like every other result file."""
    from fault_helpers import run_tiny

    old = os.umask(0o022)
    try:
        run_tiny(tmp_path / "run", "train.save_final=true", "reference.mode=cached")
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"]
    assert any(p.suffix == ".safetensors" and "final" in p.parts for p in files)
    assert any(p.suffix == ".safetensors" and "checkpoints" in p.parts for p in files)
    assert any(p.name.startswith("reference") and p.suffix == ".safetensors" for p in files), files
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o644, path
