"""Packaging: the recipes ship inside the wheel and `preflab recipes` finds, prints and copies them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from preflab.cli import app
from preflab.cli.recipes import find_recipe, recipe_paths
from preflab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_command_lists_every_recipe():
    result = CliRunner().invoke(app, ["recipes"])
    assert result.exit_code == 0, result.output
    names = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    assert sorted(recipe_paths()) == names and "dpo" in names
    assert all(line.split()[0] in names for line in result.stdout.splitlines()[:-1])


def test_recipes_command_prints_and_copies_without_overwriting(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(app, ["recipes", "dpo"])
    assert shown.exit_code == 0
    assert shown.stdout == (ROOT / "recipes" / "dpo.yaml").read_text(encoding="utf-8")
    copied = runner.invoke(app, ["recipes", "dpo", "kto", "--out", str(tmp_path)])
    assert copied.exit_code == 0, copied.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dpo.yaml", "kto.yaml"]
    again = runner.invoke(app, ["recipes", "dpo", "--out", str(tmp_path)])
    assert isinstance(again.exception, ConfigError) and "exists" in str(again.exception)


def test_unknown_recipe_names_the_closest():
    with pytest.raises(ConfigError, match="unknown recipe 'dpoo'; did you mean 'dpo'"):
        find_recipe("dpoo")


def test_build_step_puts_recipes_and_py_typed_into_the_package(tmp_path):
    """setup.py's build_py copies recipes/ into preflab/recipes/ (what the wheel carries); py.typed is package
    data."""
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("src", "recipes"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    assert sorted(p.name for p in (out / "preflab" / "recipes").glob("*.yaml")) == sorted(
        p.name for p in (ROOT / "recipes").glob("*.yaml")
    )
    assert (out / "preflab" / "py.typed").is_file()


def test_license_and_changelog_are_there():
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_setup_hands_pips_find_links_to_uv(tmp_path):
    """uv does not read pip's configuration, so `make setup` passes pip's find-links on (where a machine keeps the CPU
    torch wheel): from PIP_FIND_LINKS, else from pip's config files; the main install compiles bytecode."""
    import os

    def uv_lines(env):
        out = subprocess.run(
            ["make", "-n", "-B", "-C", str(ROOT), "setup", f"PYTHON={sys.executable}"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line for line in out.splitlines() if "uv pip install" in line]

    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    lines = uv_lines({**env, "PIP_FIND_LINKS": "/x/wheels"})
    assert len(lines) == 2 and all("--find-links /x/wheels" in line for line in lines)
    assert '--compile-bytecode "torch==2.13.0"' in lines[0] and "--no-deps" in lines[1]
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /y/wheels\n", encoding="utf-8")
    lines = uv_lines({**env, "PIP_CONFIG_FILE": str(conf)})
    assert all("--find-links /y/wheels" in line for line in lines)
