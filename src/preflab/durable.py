"""Durable writes for run directories: flushed appends, atomic replaces, and write failures as one line.

A process killed at any instant (``kill -9``) leaves every run file either as it was before a write or
after it, except the last line of an append-only log, which may be cut short; readers drop such a
trailing partial line (see :func:`preflab.training.observe.read_metrics_rows`). A failed write (disk
full, quota, read-only file system) raises :class:`~preflab.errors.StorageError` naming the path.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StorageError
from .files import new_file_mode

#: errno values that mean "the disk (or the user's quota) is full".
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def describe(exc: BaseException) -> str:
    """A short reason for a failed write: ``disk full (No space left on device)`` or the error's text."""
    err = getattr(exc, "errno", None)
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if err is None:  # a library's wrapped I/O error (safetensors: "... (os error 28)")
        err = next((e for e in DISK_FULL if f"(os error {e})" in text), None)
    return f"disk full ({text})" if err in DISK_FULL else text


def storage_error(path: str | Path, exc: BaseException, what: str = "cannot write") -> StorageError:
    """The one-line error for a failed write of ``path``."""
    return StorageError(f"{what}: {describe(exc)}", file=str(path))


def fsync_dir(path: Path) -> None:
    """Persist a directory entry change (a rename, a new file); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on directories; the data itself was already synced
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file (one written by another library: safetensors, transformers) to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path, line: str, sync: bool = True) -> None:
    """Append ``line`` (newline added) in one write, flushed (so it survives ``kill -9``) and, with ``sync``,
    fsync'd (so it survives a power cut).

    If the write fails the file is cut back to its previous length, so a full disk leaves no partial line.
    """
    data = (line + "\n").encode("utf-8")
    try:
        with path.open("ab") as fh:
            size = fh.tell()
            try:
                fh.write(data)
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            except OSError:
                _truncate(path, size)
                raise
    except OSError as exc:
        raise storage_error(path, exc) from None


def _truncate(path: Path, size: int) -> None:
    try:
        os.truncate(path, size)
    except OSError:
        pass  # the reader drops a partial trailing line anyway


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, rename), mode 0666 less the umask; failures raise
    StorageError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise storage_error(path, exc) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would make a run's files private to their writer
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise storage_error(path, exc) from None
        raise
    fsync_dir(path.parent)


@contextmanager
def disk_full_as_error(where: str | Path) -> Iterator[None]:
    """Turn a disk-full ``OSError`` raised inside the block into a one-line :class:`StorageError`.

    The error names the file the OS reported, else ``where`` (the run directory).
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise storage_error(exc.filename or where, exc) from None
