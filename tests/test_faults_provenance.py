"""Fault injection, issue 23 items 1 and 5: a changed setting must not silently continue an old run, and the
quickstart must never write pairs its own loader rejects. Tiny models; each test runs in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from preflab.cli import app
from preflab.data import load_preferences, save_records
from preflab.errors import ConfigError
from preflab.models import tiny_model
from preflab.training import train
from preflab.training.checkpoint import list_checkpoints
from preflab.training.provenance import PROVENANCE_FILE
from test_training_utils import make_cfg, max_abs_diff, state, synthetic_pairs

BASE = ["train.batch_size=2", "train.max_steps=3", "train.save_every=1", "train.lr=5e-4", "train.save_final=false"]


def _train(out: Path, *overrides: str, records=None):
    model, tok = tiny_model()
    cfg = make_cfg(out, *BASE, *overrides)
    return model, train(cfg, records=records or synthetic_pairs(6), model=model, tokenizer=tok)


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_every_run_records_its_provenance(tmp_path):
    _train(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / PROVENANCE_FILE).read_text())
    assert doc["config"]["train.lr"] == 5e-4 and doc["config"]["objective.name"] == "dpo"
    assert "output_dir" not in doc["config"] and "train.progress" not in doc["config"]
    assert "train.save_every" not in doc["config"] and not any(k.startswith("eval.") for k in doc["config"])
    assert doc["data"]["train"]["rows"] == 6 and len(doc["data"]["train"]["sha256"]) == 64
    assert doc["model"]["source"] == "python" and len(doc["model"]["weights_sha256"]) == 64
    assert doc["sessions"][0]["code"]["version"] and doc["forked_from"] is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["train.lr=1e-3"], "train.lr: 0.0005 -> 0.001"),
        (["objective.params={beta: 0.3}"], "objective.params.beta"),
        (["seed=5"], "seed: 0 -> 5"),
    ],
)
def test_resume_with_a_changed_setting_is_refused_and_nothing_is_touched(tmp_path, change, named):
    run = tmp_path / "run"
    _train(run, "train.max_steps=2")
    before = _snapshot(run)
    with pytest.raises(ConfigError) as err:
        _train(run, "train.max_steps=2", "train.resume=true", *change)
    message = str(err.value)
    assert named in message and "\n" not in message and "fork" in message
    assert _snapshot(run) == before  # config.yaml, provenance, metrics and checkpoints unchanged


def test_resume_with_other_data_is_refused(tmp_path):
    run = tmp_path / "run"
    _train(run, "train.max_steps=2")
    with pytest.raises(ConfigError, match=r"train data: 6 rows, sha256 \w+ -> 7 rows"):
        _train(run, "train.max_steps=2", "train.resume=true", records=synthetic_pairs(7))


def test_unchanged_resume_and_watch_only_changes_continue(tmp_path):
    run = tmp_path / "run"
    _train(run, "train.max_steps=3", "train.save_every=2")  # checkpoint at 2 and 3
    for p in list_checkpoints(run / "checkpoints")[1:]:  # as if killed after step 2
        import shutil

        shutil.rmtree(p[1])
    _, result = _train(run, "train.max_steps=3", "train.resume=true", "train.save_every=5", "train.log_every=2")
    assert result.resumed_from == 2 and result.steps == 3
    doc = json.loads((run / PROVENANCE_FILE).read_text())
    assert [s["from_step"] for s in doc["sessions"]] == [0, 2]


def test_a_run_without_provenance_is_checked_against_its_config_yaml(tmp_path):
    run = tmp_path / "run"
    _train(run, "train.max_steps=2")
    (run / PROVENANCE_FILE).unlink()  # written by an older preflab
    with pytest.raises(ConfigError, match="train.lr: 0.0005 -> 0.001"):
        _train(run, "train.max_steps=2", "train.resume=true", "train.lr=1e-3")


def test_fork_starts_a_new_run_from_the_old_weights_and_records_it(tmp_path, tiny_dir):
    run = tmp_path / "run"
    data = save_records(synthetic_pairs(6), tmp_path / "prefs.jsonl")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"output_dir: {run}\nmodel: {{name_or_path: {tiny_dir}}}\ndata: {{path: {data}}}\n"
        "train: {batch_size: 2, max_steps: 2, save_every: 1, lr: 5.0e-3, bf16: false, progress: false, "
        "scheduler: constant, warmup_steps: 0, save_final: false}\n"
    )
    assert CliRunner().invoke(app, ["train", str(cfg)]).exit_code == 0
    old_weights = load_file(run / "checkpoints" / "step-00000002" / "model.safetensors")
    refused = CliRunner().invoke(app, ["train", str(cfg), "--set", "train.resume=true", "--set", "train.lr=1e-12"])
    assert isinstance(refused.exception, ConfigError)
    forked = CliRunner().invoke(
        app, ["train", str(cfg), "--set", "train.lr=1e-12", "--set", "train.max_steps=1", "--fork"]
    )
    assert forked.exit_code == 0, forked.output
    doc = json.loads((run / PROVENANCE_FILE).read_text())
    origin = doc["forked_from"]
    assert origin["step"] == 2 and "train.lr: 0.005 -> 1e-12" in origin["changed"]
    assert Path(origin["checkpoint"]).is_dir() and (Path(origin["run"]) / "config.yaml").is_file()
    assert "lr: 0.005" in (Path(origin["run"]) / "config.yaml").read_text()  # the old run kept its config
    new_weights = load_file(run / "checkpoints" / "step-00000001" / "model.safetensors")
    assert max_abs_diff(old_weights, new_weights) < 1e-6  # one step at lr 1e-12 from the old weights
    fresh = {k: v for k, v in state(tiny_model()[0]).items() if k in new_weights}
    assert max_abs_diff(fresh, new_weights) > 1e-4
    assert [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1]
    nothing = CliRunner().invoke(app, ["train", str(cfg), "--set", f"output_dir={tmp_path / 'empty'}", "--fork"])
    assert isinstance(nothing.exception, ConfigError) and "holds none" in str(nothing.exception)


# ---------------------------------------------------------------- the quickstart (items 1 and 5)

QS = [
    "quickstart.train_prompts=6",
    "quickstart.eval_prompts=4",
    "quickstart.samples_per_prompt=3",
    "quickstart.max_new_tokens=4",
    "quickstart.n_bootstrap=100",
    "quickstart.rounds=1",  # one round: the stage names and counts below are round 1's
    "train.max_length=128",
    "train.save_every=1",
    "train.progress=false",
    "train.bf16=false",
]


def _quickstart(out: Path, tiny_dir: Path, *extra: str):
    result = CliRunner().invoke(
        app,
        [
            "quickstart",
            "--out",
            str(out),
            "--set",
            f"model.name_or_path={tiny_dir}",
            *[a for s in (*QS, *extra) for a in ("--set", s)],
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads((out / "stages.json").read_text())


def test_quickstart_redoes_training_when_lr_changes(tmp_path, tiny_dir):
    run = tmp_path / "qs_[/x]"  # rich markup in the path must not crash the summary (item 11)
    _quickstart(run, tiny_dir)
    old = load_file(run / "final" / "adapter_model.safetensors")
    stages = _quickstart(run, tiny_dir, "train.lr=1e-2")
    new = load_file(run / "final" / "adapter_model.safetensors")
    assert max_abs_diff(old, new) > 1e-5  # a new model, not the old checkpoints resumed
    # 6 prompts -> 4 pairs (the tiny model's answers all score 0 under the on-topic/echo guards: two prompts'
    # samples tie throughout and give no pair), batch 8, 2 epochs
    assert stages["train"]["info"]["steps"] == 1
    moved = next((run / "history").glob("run-*"))
    assert list_checkpoints(moved / "checkpoints") and "lr: 0.0005" in (moved / "config.yaml").read_text()
    doc = json.loads((run / PROVENANCE_FILE).read_text())
    assert doc["config"]["train.lr"] == 1e-2 and [s["from_step"] for s in doc["sessions"]] == [0]
    again = _quickstart(run, tiny_dir, "train.lr=1e-2")  # unchanged: every stage reused
    assert again["train"] == stages["train"]


def _blank_first_answers(monkeypatch):
    """Make the sampler return an empty (or whitespace) first completion for every prompt."""
    import preflab.generation.sampler as sampler

    real = sampler.sample

    def sample(model, tok, prompts, params, on_prompt_done=None):
        def blank(i, comps):  # before the caller sees them: as each prompt finishes, and so in the result
            comps[0].text = "" if i % 2 else "  \n"
            if on_prompt_done is not None:
                on_prompt_done(i, comps)

        return real(model, tok, prompts, params, on_prompt_done=blank)

    monkeypatch.setattr(sampler, "sample", sample)


def test_quickstart_empty_answers_never_become_pairs(tmp_path, tiny_dir, monkeypatch):
    _blank_first_answers(monkeypatch)
    run = tmp_path / "qs"
    stages = _quickstart(run, tiny_dir)
    info = stages["pairs"]["info"]
    assert info["empty_completions_dropped"] == 6 and info["pairs"] > 0
    pairs = load_preferences(run / "pairs.jsonl").records  # the loader accepts every pair written
    assert len(pairs) == info["pairs"] and all(p.chosen.strip() and p.rejected.strip() for p in pairs)
    assert stages["train"]["info"]["steps"] >= 1


def test_a_pairs_stage_written_by_the_old_builder_is_redone(tmp_path, tiny_dir):
    from preflab.data import PreferencePair
    from preflab.pipelines.stages import fingerprint

    run = tmp_path / "qs"
    stages = _quickstart(run, tiny_dir)
    stages_steps = stages["train"]["info"]["steps"]
    # what the old builder left: a pairs file with an empty answer, recorded under its old fingerprint
    q = {"pool": "noisy", "strategy": "best-vs-worst", "k": 1}
    stages["pairs"]["fingerprint"] = fingerprint(stages["samples"]["fingerprint"], q["pool"], q["strategy"], q["k"])
    for name in ("train", "eval", "report"):
        del stages[name]
    (run / "stages.json").write_text(json.dumps(stages))
    save_records([PreferencePair("q", "", "no")], run / "pairs.jsonl")
    again = _quickstart(run, tiny_dir)
    assert again["pairs"]["fingerprint"] != stages["pairs"]["fingerprint"]
    assert all(p.chosen for p in load_preferences(run / "pairs.jsonl").records)
    # the redone pairs equal the first run's, so training continued its own finished checkpoint
    assert again["train"]["info"]["steps"] == stages_steps
