"""``preflab data inspect`` / ``convert``, length statistics, and the ``data:`` config section."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.config import RunConfig, load_config
from preflab.data import DataConfig, PreferencePair, load_data, load_preferences, split_by_prompt
from preflab.data.stats import LengthStats, length_table
from preflab.errors import ConfigError, DataError

runner = CliRunner()


def write_jsonl(path, rows, extra_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(x + "\n" for x in extra_lines))
    return path


def test_length_stats_are_nearest_rank():
    s = LengthStats.of("x", list(range(1, 101)))
    assert (s.count, s.p50, s.p90, s.p99, s.max, s.mean) == (100, 50, 90, 99, 100, 50.5)


@pytest.fixture(scope="module")
def tok():
    """The tiny byte-level ChatML tokenizer: one token per UTF-8 byte, one per special token."""
    from preflab.models import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="module")
def tok_dir(tok, tmp_path_factory):
    """The tiny tokenizer saved as a loadable HF directory (no model weights needed)."""
    path = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(path)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": len(tok)}))
    return path


def test_token_lengths_with_the_byte_level_tiny_tokenizer(tok):
    records = [PreferencePair("abc", "de", "f"), PreferencePair("ab", "h\u00e9", "fgh")]
    rows = {s.field: (s.count, s.p50, s.max) for s in length_table(records, tok)}
    assert rows == {"prompt": (2, 2, 3), "chosen": (2, 2, 3), "rejected": (2, 1, 3)}
    conv = [
        PreferencePair(
            [{"role": "user", "content": "hi"}],
            [{"role": "assistant", "content": "yo"}],
            [{"role": "assistant", "content": "nope"}],
        )
    ]
    rows = {s.field: s.max for s in length_table(conv, tok)}
    # prompt: <|im_start|> "user\nhi" <|im_end|> "\n" <|im_start|> "assistant\n" = 1+7+1+1+1+10
    # response: what follows the generation cue: "yo" <|im_end|> "\n"
    assert rows == {"prompt": 21, "chosen": 4, "rejected": 6}


def test_inspect_prints_format_counts_lengths_and_every_finding(tmp_path, tok_dir):
    rows = [
        {"chosen": f"\n\nHuman: q{i}\n\nAssistant: yes{i}", "rejected": f"\n\nHuman: q{i}\n\nAssistant: no"}
        for i in range(4)
    ]
    path = write_jsonl(
        tmp_path / "hh.jsonl", rows, ['{"chosen": oops', json.dumps({"chosen": "same", "rejected": "same"})]
    )
    result = runner.invoke(app, ["data", "inspect", str(path), "--tokenizer", str(tok_dir)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "format:   implicit_preference" in out
    assert "rows:     6 read, 4 valid, 2 bad" in out
    assert "bad rows: malformed_json=1, identical_responses=1" in out
    assert "records:  4 pairs (standard)" in out
    # prompt "\n\nHuman: qI\n\nAssistant:" = 23 bytes; chosen " yesI" = 5; rejected " no" = 3
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  ") and "." in line}
    assert lines["prompt"] == ["4", "23", "23", "23", "23", "23.0"]
    assert lines["chosen"] == ["4", "5", "5", "5", "5", "5.0"]
    assert lines["rejected"] == ["4", "3", "3", "3", "3", "3.0"]
    assert f"{path}, line 5: malformed JSON" in out
    assert f"{path}, line 6, field 'rejected': chosen and rejected transcripts are identical" in out
    strict = runner.invoke(app, ["data", "inspect", str(path), "--tokenizer", "none", "--strict"])
    assert strict.exit_code == 2


def test_convert_rated_to_pairs_then_unpaired(tmp_path):
    rows = [
        {
            "instruction": "p",
            "completions": [
                {"response": "a", "overall_score": 2},
                {"response": "b", "overall_score": 9},
                {"response": "c", "overall_score": 5},
            ],
        }
    ]
    src = write_jsonl(tmp_path / "uf.jsonl", rows)
    out = tmp_path / "pairs.jsonl"
    result = runner.invoke(app, ["data", "convert", str(src), str(out), "--to", "pairs", "--rule", "all-pairs"])
    assert result.exit_code == 0, result.output
    assert "1 rows (rated) -> 3 pairs" in result.output
    assert [(r["chosen"], r["rejected"]) for r in map(json.loads, out.read_text().splitlines())] == [
        ("b", "c"),
        ("b", "a"),
        ("c", "a"),
    ]
    out2 = tmp_path / "kto.jsonl"
    assert runner.invoke(app, ["data", "convert", str(out), str(out2), "--to", "unpaired"]).exit_code == 0
    assert [(r["completion"], r["label"]) for r in map(json.loads, out2.read_text().splitlines())] == [
        ("b", True),
        ("c", False),
        ("b", True),
        ("a", False),
        ("c", True),
        ("a", False),
    ]


def test_convert_bad_file_raises_the_data_error(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "a"}])
    result = runner.invoke(app, ["data", "convert", str(src), str(tmp_path / "o.jsonl"), "--to", "pairs"])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    assert result.exception.line == 1 and not (tmp_path / "o.jsonl").exists()


def test_data_section_in_run_config(tmp_path):
    cfg = load_config(overrides=["data.path=x.jsonl", "data.on_bad_row=skip", "data.max_chars=100"])
    assert isinstance(cfg, RunConfig) and cfg.data.path == "x.jsonl" and cfg.data.max_chars == 100
    with pytest.raises(ConfigError, match="data.on_bad_rows"):
        load_config(overrides=["data.on_bad_rows=skip"])
    with pytest.raises(ConfigError, match="only one evaluation source"):
        load_config(overrides=["data.eval_path=e.jsonl", "data.eval_fraction=0.1"])
    kw = cfg.data.load_kwargs(seed=3, output_dir=tmp_path)
    assert kw["report_path"] == tmp_path / "data_skipped.jsonl" and kw["seed"] == 3 and kw["on_bad_row"] == "skip"


def test_load_data_holds_out_whole_prompts(tmp_path):
    rows = [{"prompt": f"p{i % 10}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    train, held = load_data(DataConfig(path=str(path), eval_fraction=0.3), seed=1)
    assert held is not None and len(train.records) + len(held.records) == 40
    assert not {r.prompt for r in train.records} & {r.prompt for r in held.records}
    assert all(len([r for r in held.records if r.prompt == p]) == 4 for p in {r.prompt for r in held.records})
    again = split_by_prompt(load_preferences(path).records, 0.3, seed=1)
    assert again[1] == held.records  # reproducible in the seed
    train2, held2 = load_data(DataConfig(path=str(path), eval_path=str(path)))
    assert held2 is not None and held2.records == train2.records
    with pytest.raises(DataError, match="set data.path"):
        load_data(DataConfig())
