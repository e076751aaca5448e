"""``preflab recipes``: list the shipped run configs, print one, or copy them into a folder to edit.

The recipes live in ``recipes/`` of the source tree (the one copy; a clone's users edit them there). A wheel
carries the same files as ``preflab/recipes/`` (copied there by ``setup.py`` at build time).
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import typer

from ..errors import ConfigError


def recipe_dir() -> Path:
    """The folder holding the recipes: inside the installed package (a wheel), else the source tree's."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "recipes", here.parents[3] / "recipes"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise ConfigError(
        "no recipes found: this installation carries neither preflab/recipes/ nor a source tree's recipes/"
    )


def recipe_paths() -> dict[str, Path]:
    """Recipe name (the file name without .yaml) → path, sorted by name."""
    return {path.stem: path for path in sorted(recipe_dir().glob("*.yaml"))}


def find_recipe(name: str) -> Path:
    """The path of recipe ``name``; an unknown name is a ConfigError naming the closest one."""
    paths = recipe_paths()
    stem = name.removesuffix(".yaml")
    if stem not in paths:
        close = difflib.get_close_matches(stem, list(paths), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown recipe '{name}'{hint} (known: {', '.join(paths)})")
    return paths[stem]


def _summary(path: Path) -> str:
    """The recipe's first header comment line."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def recipes_command(
    names: list[str] = typer.Argument(None, help="Recipe names (default: all)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Copy the recipes into this folder (never overwrites)."),
) -> None:
    """List the shipped run configs; with names, print them; with --out, copy them into a folder to edit."""
    chosen = [find_recipe(name) for name in names] if names else list(recipe_paths().values())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for path in chosen:
            target = out / path.name
            if target.exists():
                raise ConfigError(f"{target} exists; remove it or choose another --out folder")
        for path in chosen:
            shutil.copyfile(path, out / path.name)
            typer.echo(str(out / path.name))
        return
    if names:
        for path in chosen:
            typer.echo(path.read_text(encoding="utf-8"), nl=False)
        return
    width = max(len(path.stem) for path in chosen)
    for path in chosen:
        typer.echo(f"{path.stem:<{width}}  {_summary(path)}")
    typer.echo(f"(in {recipe_dir()}; `preflab recipes NAME` prints one, `--out DIR` copies them)")


def register(app: typer.Typer) -> None:
    app.command("recipes")(recipes_command)
