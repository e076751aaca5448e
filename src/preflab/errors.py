"""User-caused failures.

Every error a user can cause (a bad file, a bad row, a bad config, a missing model) is a
:class:`PreflabError`. The CLI prints it as one line on stderr and exits with code 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations


class PreflabError(Exception):
    """Base class of errors caused by user input. ``str(err)`` is the one-line message."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.row = row
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        where = []
        if self.file is not None:
            where.append(str(self.file))
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigError(PreflabError):
    """A run config is invalid: unknown key, wrong type, bad override."""


class ModelNotFoundError(PreflabError):
    """A model name or path cannot be resolved to loadable weights."""


class DataError(PreflabError):
    """A data file or row is invalid (missing field, malformed line, bad value)."""


class TrainingError(PreflabError):
    """A training run cannot continue (non-finite loss, incompatible checkpoint)."""


class CheckpointError(PreflabError):
    """A checkpoint is missing, incomplete or does not match the run."""


class OutputError(PreflabError):
    """A file or directory cannot be written where the user asked (a directory where a file belongs,
    a parent that is a file, no permission, a full disk)."""


class StorageError(PreflabError):
    """A run file cannot be written (disk full, quota, read-only or missing directory)."""


class RunLockedError(PreflabError):
    """A run directory is in use by another run (its lock names the holder's pid and host)."""


class PreflabWarning(UserWarning):
    """A recoverable problem a user should see (a dropped partial log line, a stale lock, a checkpoint fallback).

    The CLI prints it as one ``warning: ...`` line on stderr.
    """
