"""Every runnable snippet in README.md and docs/ runs, on a tiny model, so the docs cannot rot.

The convention, for whoever writes docs:

* ```` ```bash ```` and ```` ```python ```` blocks run; blocks in any other language (``text``, ``yaml``,
  ``console``, none) are output or examples and do not.
* ``<!-- skip: reason -->`` on the line right before a block's opening fence keeps it from running (``make
  demo``, installs, TRL, several processes).
* A page's blocks run in order in one scratch directory, so a later block may use what an earlier one wrote.
  The directory holds copies of ``recipes/`` and ``bench/`` and two stand-ins for the reader's data:
  ``my_prefs`` (a ``save_to_disk`` directory with ``train`` and ``test`` splits) and ``my_prefs.jsonl``.
* bash: each command (continuation lines joined, comments dropped) that starts with ``preflab`` runs in this
  process through the command line's Typer app; leading ``VAR=value`` words set environment variables for it;
  ``python ...`` runs in a subprocess with this interpreter. Any other command fails the test: run it here or
  mark its block ``skip``.
* Substitutions that turn commands written for real models into runs of a few seconds: every name in
  ``MODEL_NAMES`` becomes a tiny random Llama saved as a Hugging Face directory; the commands that
  ``size_overrides`` names get its options appended (later options win); in python blocks,
  ``preflab.load_config`` appends the same ``--set`` overrides as ``preflab train``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# pages whose runnable blocks the docs promise (the README's example, getting started's commands)
MUST_RUN = {"README.md": 2, "docs/getting-started.md": 4}

MODEL_NAMES = ["Qwen/Qwen2.5-0.5B-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m-instruct"]
TRAIN_SETS = [
    "train.max_steps=2",
    "train.batch_size=2",
    "train.grad_accum=1",
    "train.max_length=128",
    "train.progress=false",
    "train.save_every=0",
    "train.eval_every=0",
    "train.bf16=false",
    "online.max_new_tokens=8",
    "online.num_prompts=4",
    "data.eval_fraction=0",
]  # the tiny model's samples give a handful of pairs, too few to split
EVAL_SETS = [
    "eval.n_prompts=4",
    "eval.max_new_tokens=8",
    "eval.n_bootstrap=50",
    "eval.lc_bootstrap=10",
    "eval.batch_size=8",
    "eval.bf16=false",
]


def size_overrides(command: tuple[str, ...], tiny: str) -> list[str]:
    """Options appended to a ``preflab`` command so it runs on the tiny model in seconds."""
    sets = {
        ("train",): [f"model.name_or_path={tiny}", *TRAIN_SETS],
        ("eval",): [f"model.name_or_path={tiny}", *EVAL_SETS],
    }
    # 40 prompts: the tiny model's answers mostly tie at gold 0 (on-topic and echo guards), few prompts give a pair
    flags = {
        ("sample",): ["--model", tiny, "--n", "40", "-k", "4", "--max-new-tokens", "16"],
        ("generate",): ["--model", tiny, "--max-new-tokens", "4"],
        ("data", "inspect"): ["--tokenizer", tiny],
        ("testbed", "run"): ["--iterations", "10"],
    }
    from preflab.cli.oneline import oneline_algorithms

    if command and command[0] in oneline_algorithms():  # preflab dpo --model ... --dataset ...
        return [item for value in TRAIN_SETS for item in ("--set", value)]
    for key, values in sets.items():
        if command[: len(key)] == key:
            return [item for value in values for item in ("--set", value)]
    for key, values in flags.items():
        if command[: len(key)] == key:
            return values
    return []


@dataclass
class Block:
    lang: str
    code: str
    line: int  # of the opening fence, 1-based


def runnable_blocks(text: str) -> list[Block]:
    """The page's ```bash / ```python blocks that no ``<!-- skip: ... -->`` line precedes."""
    blocks, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        match = re.match(r"^```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        if lang in ("bash", "python") and not before.startswith("<!-- skip"):
            blocks.append(Block(lang, "\n".join(lines[start + 1 : end]), start + 1))
        i = end + 1
    return blocks


def bash_commands(code: str) -> list[list[str]]:
    """Shell words of each command: continuations joined, comments dropped, blank lines skipped."""
    joined = re.sub(r"\\\n", " ", code)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def substitute(text: str, tiny: str) -> str:
    for name in MODEL_NAMES:
        text = text.replace(name, tiny)
    return text


@pytest.fixture(scope="module")
def reader_data(tmp_path_factory):
    """The stand-ins for the reader's data: my_prefs (train/test save_to_disk) and my_prefs.jsonl."""
    import datasets

    from preflab.data import save_records
    from preflab.data.serialize import record_to_dict
    from test_training_utils import synthetic_pairs

    root = tmp_path_factory.mktemp("reader_data")
    train, test = synthetic_pairs(16), synthetic_pairs(8, seed=3)
    datasets.DatasetDict(
        train=datasets.Dataset.from_list([record_to_dict(r) for r in train]),
        test=datasets.Dataset.from_list([record_to_dict(r) for r in test]),
    ).save_to_disk(str(root / "my_prefs"))
    save_records(train + test, root / "my_prefs.jsonl")
    return root


def run_bash(block: Block, where: str, tiny: str, monkeypatch) -> None:
    from preflab.cli import app

    for words in bash_commands(substitute(block.code, tiny)):
        env = {}
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        shown = f"{where}, block at line {block.line}: {shlex.join(words)}"
        if words[0] == "preflab":
            args = words[1:]
            args += size_overrides(tuple(a for a in args if not a.startswith("-"))[:2], tiny)
            with monkeypatch.context() as patch:
                for key, value in env.items():
                    patch.setenv(key, value)
                result = CliRunner().invoke(app, args)
            assert result.exit_code == 0, f"{shown}\n{result.output}\n{result.exception!r}"
        elif words[0] == "python":
            src = str(Path(__import__("preflab").__file__).parents[1])  # the code under test
            proc = subprocess.run(
                [sys.executable, *words[1:]],
                capture_output=True,
                text=True,
                env={**os.environ, **env, "PYTHONPATH": src},
            )
            assert proc.returncode == 0, f"{shown}\n{proc.stdout}\n{proc.stderr}"
        else:
            pytest.fail(f"{shown}: only preflab and python commands run here; mark the block <!-- skip: why -->")


def run_python(block: Block, where: str, tiny: str, monkeypatch) -> None:
    import preflab
    import preflab.config

    real = preflab.config.load_config

    def small_load_config(path=None, overrides=None, *args, **kwargs):
        more = [f"model.name_or_path={tiny}", *TRAIN_SETS]
        return real(path, [*(overrides or []), *more], *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(preflab.config, "load_config", small_load_config)
        patch.setattr(preflab, "load_config", small_load_config)
        code = compile(substitute(block.code, tiny), f"{where}:{block.line}", "exec")
        exec(code, {"__name__": "__docs__"})


def test_promised_pages_have_runnable_blocks():
    for where, count in MUST_RUN.items():
        assert len(runnable_blocks((ROOT / where).read_text(encoding="utf-8"))) >= count, where


RUNNABLE = [p for p in PAGES if runnable_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_runnable_snippets(page, tmp_path, monkeypatch, tiny_dir, reader_data):
    where = str(page.relative_to(ROOT))
    blocks = runnable_blocks(page.read_text(encoding="utf-8"))
    for name in ("recipes", "bench"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for item in reader_data.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        (run_bash if block.lang == "bash" else run_python)(block, where, str(tiny_dir), monkeypatch)


def test_convention_parses_fences_and_skip_markers():
    text = "a\n<!-- skip: slow -->\n```bash\nmake demo\n```\n```bash\npreflab models  # list\n```\n```text\nx\n```\n"
    blocks = runnable_blocks(text)
    assert [(b.lang, b.code, b.line) for b in blocks] == [("bash", "preflab models  # list", 6)]
    assert bash_commands("A=1 preflab x \\\n  --set a=b  # note\n\npython y.py") == [
        ["A=1", "preflab", "x", "--set", "a=b"],
        ["python", "y.py"],
    ]
