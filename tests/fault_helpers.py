"""Helpers of the fault-injection tests: a tiny 6-step run, a tiny recipe on disk, the console entry point
in-process."""

from __future__ import annotations

import json
import sys
import warnings

import pytest

from preflab.data import save_records
from preflab.models import tiny_model
from preflab.training import train
from test_training_utils import make_cfg, synthetic_pairs

RECORDS = synthetic_pairs(5)
STEPS = 6


class Killed(Exception):
    """Stands for a crash at the end of a step (raised by a callback)."""


def kill_at_step(step: int):
    def callback(s: int, _metrics: dict) -> None:
        if s == step:
            raise Killed(f"killed after step {s}")

    return callback


def run_tiny(out, *extra: str, resume: bool = False, kill_at: int | None = None):
    """6 steps of DPO on the tiny model, a checkpoint every 2 steps; returns (model, result)."""
    cfg = make_cfg(
        out,
        "train.batch_size=2",
        "train.grad_accum=2",
        f"train.max_steps={STEPS}",
        "train.lr=3e-3",
        "train.save_every=2",
        "train.scheduler=cosine",
        "train.warmup_steps=2",
        "train.max_grad_norm=1.0",
        f"train.resume={str(resume).lower()}",
        "train.save_final=false",
        *extra,
    )
    model, tok = tiny_model()
    callbacks = [kill_at_step(kill_at)] if kill_at is not None else []
    result = train(cfg, records=RECORDS, model=model, tokenizer=tok, callbacks=callbacks)
    return model, result


RECIPE = """\
seed: 1
output_dir: {out}
model:
  name_or_path: {model}
data:
  path: {data}
train:
  batch_size: 2
  max_steps: 2
  save_every: 1
  bf16: false
  progress: false
  save_final: false
"""


def write_recipe(tmp_path, tiny_dir):
    """A 2-step training recipe on the tiny model writing to ``tmp_path / "run"``; returns its path."""
    data = save_records(synthetic_pairs(4), tmp_path / "prefs.jsonl")
    path = tmp_path / "run.yaml"
    path.write_text(RECIPE.format(out=tmp_path / "run", model=tiny_dir, data=data))
    return path


def run_entry(args: list[str], monkeypatch, capsys) -> tuple[int | None, str, str]:
    """Run ``preflab ARGS`` in-process through the console entry point (the one-line / exit-2 path);
    (exit code, stdout, stderr)."""
    from preflab.cli import main

    monkeypatch.setattr(sys, "argv", ["preflab", *args])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() installs its one-line printer
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def run_cli_output(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """:func:`run_entry` with a missing exit code read as 0."""
    code, out, err = run_entry(args, monkeypatch, capsys)
    return code or 0, out, err


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run ``preflab ARGS`` through the console entry point; (exit code, stderr)."""
    code, _, err = run_entry(list(args), monkeypatch, capsys)
    assert "Traceback" not in err
    return code, err


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run ``preflab ARGS``; (exit code, its one ``error:`` line). Stderr holds no traceback and one such line."""
    code, err = run_main(monkeypatch, capsys, *args)
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return code, errors[0]
