"""One run per run directory: an advisory lock on ``OUTPUT_DIR/.lock``.

The lock is ``fcntl.flock`` on the file, so the kernel releases it when the holder exits, however it
exits; the file records the holder (``{"pid", "host", "started"}``) for the refusal message. A run that
ends normally empties the file; a run that finds the lock free but the file still naming a holder reports
that stale entry (a run that was killed) and takes over. Re-entrant within a process: the quickstart holds
the lock while its train stage (which locks the same directory) runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .durable import storage_error
from .errors import PreflabWarning, RunLockedError
from .files import check_output_dir

LOCK_FILE = ".lock"
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})  # flock unsupported by the file system
UNLOCKED = -1  # what acquire() returns where locks are unsupported

_held: dict[str, list[int]] = {}  # real path of a locked directory -> [fd, depth]


def holder_info() -> dict[str, Any]:
    """What this process writes into a lock it holds."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _read_holder(fd: int) -> dict[str, Any] | None:
    """The holder recorded in the lock file, or None when it is empty or unreadable."""
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        info = json.loads(raw) if raw else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "an unknown process"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (started {info.get('started', '?')})"


def pid_alive(pid: Any) -> bool | None:
    """Whether process ``pid`` runs on this host (None when that cannot be told)."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return None
    return True


def _stale_note(path: Path, info: dict[str, Any]) -> str:
    here = info.get("host") == socket.gethostname()
    alive = pid_alive(info.get("pid")) if here else None
    state = {False: "no longer running", True: "running but not holding the lock", None: "not holding the lock"}
    return f"{path}: stale lock of {_describe(info)}, {state[alive]} (an earlier run was killed); taking it over"


def acquire(run_dir: Path) -> int:
    """Lock ``run_dir`` for this process and return the lock file's descriptor (see :func:`run_lock`).

    On a file system without ``flock`` support it warns and returns :data:`UNLOCKED`.
    """
    path = Path(check_output_dir(run_dir)) / LOCK_FILE  # an output_dir that is a file: say so, not ENOTDIR
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise storage_error(path, exc, "cannot create the run lock") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _read_holder(fd)
        os.close(fd)
        raise RunLockedError(
            f"run directory in use by {_describe(info)}; wait for that run to end or choose another output_dir",
            file=str(path),
        ) from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in NO_LOCKS:
            warnings.warn(
                f"{path}: this file system does not support file locks ({exc.strerror}); running "
                "without the run-directory lock",
                PreflabWarning,
                stacklevel=3,
            )
            return UNLOCKED
        raise storage_error(path, exc, "cannot lock the run directory") from None
    previous = _read_holder(fd)
    if previous:
        warnings.warn(_stale_note(path, previous), PreflabWarning, stacklevel=3)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info()) + "\n").encode(), 0)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        raise storage_error(path, exc, "cannot write the run lock") from None
    return fd


def release(fd: int) -> None:
    """Empty the lock file (a clean end leaves no holder behind) and unlock it."""
    if fd == UNLOCKED:
        return
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass  # a full disk cannot refuse a truncation, but a vanished file system can
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def run_lock(run_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the block; a second run on it raises :class:`RunLockedError`.

    ``enabled=False`` (the non-main processes of a distributed run) makes it a no-op.
    """
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [acquire(run_dir), 1]
    try:
        yield
    finally:
        entry = _held[key]
        entry[1] -= 1
        if entry[1] == 0:
            del _held[key]
            release(entry[0])
