"""Writing result files atomically, with the modes a user expects.

Every result file (eval JSON, report, stage manifest, samples, pairs, provenance) is written to a
temporary file in the target's folder and renamed into place, so a reader never sees half a file.
``tempfile.mkstemp`` creates that temporary file with mode 0600; it is widened to what ``open()`` would
have given a new file (0666 less the umask, 0644 under the usual umask 022) before the rename. A path
the user gave that cannot be written (a directory where a file belongs, a parent that is a file, no
permission, a full disk) is an :class:`~preflab.errors.OutputError` naming the path, not a traceback.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from .errors import OutputError

#: A name that is one path component: a letter, digit or '_' first, then letters, digits, '.', '_', '-'.
_NAME = re.compile(r"[^\W][\w.-]{0,99}")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be used as one file name inside a run directory (None when it can)."""
    if _NAME.fullmatch(name) and name not in (".", ".."):
        return None
    return (
        f"{name!r} is not a single file name: use letters, digits, '.', '_' and '-' (no '/' or '\\', "
        "no leading '.' or '-', at most 100 characters)"
    )


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def widen_modes(path: str | Path) -> None:
    """Give ``path`` (a file, or every file under a directory) the mode ``open()`` would have: safetensors writes
    through a private temporary file, so model, checkpoint and reference files would otherwise be left 0600."""
    path = Path(path)
    mode = new_file_mode()
    for file in [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file()):
        if file.stat().st_mode & 0o777 != mode:
            os.chmod(file, mode)


def check_output_file(path: str | Path, what: str = "output") -> Path:
    """``path`` can be written as a file: not a directory, and no file where its folders belong."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} is a directory; give a file name", file=str(path))
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what}: {parent} is a file, not a folder", file=str(path))
            break
    return path


def check_output_dir(path: str | Path, what: str = "output_dir") -> Path:
    """``path`` is (or can become) a directory: it is not an existing file, nor below one."""
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "is a file" if candidate == path else f"is below {candidate}, which is a file"
                raise OutputError(f"{what} {where}; give a directory", file=str(path))
            break
    return path


@contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success give it normal modes and rename it
    into place, on failure remove it (``path`` keeps its old content)."""
    path = check_output_file(path)
    binary = "b" in mode
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write ({exc.strerror or exc})", file=str(path)) from None
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline) as fh:
            yield fh
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write ({exc.strerror or exc})", file=str(path)) from None
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, mode 0666 less the umask."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, mode 0666 less the umask."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return Path(path)
