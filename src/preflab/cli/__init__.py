"""The ``preflab`` command line: each command is a thin wrapper over the library.

Each command group lives in its own module with a ``register(app)`` function; add a new module to
``_COMMAND_MODULES`` to expose it. User errors (:class:`preflab.errors.PreflabError`) print as one
line on stderr with exit code 2; anything else keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import typer

from ..errors import PreflabError, PreflabWarning

app = typer.Typer(
    name="preflab",
    help="Learning from preference feedback: DPO family, RLHF, Nash/self-play methods, exact testbeds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_COMMAND_MODULES = [
    "models",
    "config",
    "data",
    "evaluate",
    "rm_eval",
    "overopt",
    "sample",
    "annotate",
    "train",
    "algorithms",
    "testbed",
    "quickstart",
    "recipes",
    "arena",
    "oneline",
]


def _version(value: bool) -> None:
    if value:
        from .. import __version__
        from ..launch import active_allocator

        typer.echo(f"preflab {__version__} (malloc: {active_allocator()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """preflab command line."""


for _name in _COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Preflab's own warnings as one ``warning: ...`` line on stderr; others as Python prints them."""
    if issubclass(category, PreflabWarning):
        print(f"warning: {message}", file=file or sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        app()
    except PreflabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
