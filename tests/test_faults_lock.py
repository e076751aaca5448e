"""Fault injection, one run per directory (issue 23, item 4): a second run on a locked run directory is refused
(one line, exit 2, nothing written); a stale lock of a killed run is reported and taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from fault_helpers import run_cli, run_main, run_tiny, write_recipe
from preflab import runlock
from preflab.errors import PreflabWarning, RunLockedError


@pytest.fixture
def recipe(tmp_path, tiny_dir):
    return write_recipe(tmp_path, tiny_dir)


HOLD = (
    "import sys; from preflab.runlock import run_lock\n"
    "with run_lock(sys.argv[1]):\n print('held', flush=True)\n sys.stdin.read()"
)


@pytest.fixture
def held(tmp_path):
    """Another process holding the lock of ``tmp_path / "run"``; yields its pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc.pid
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_second_run_on_a_locked_directory_is_refused(tmp_path, held):
    import socket

    with pytest.raises(RunLockedError, match=rf"in use by pid {held} on {socket.gethostname()}"):
        run_tiny(tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before writing anything


def test_second_run_through_the_cli_is_exit_2(tmp_path, monkeypatch, capsys, recipe, held):
    code, err = run_cli(monkeypatch, capsys, "train", str(recipe))
    assert code == 2
    assert f"run{os.sep}.lock: run directory in use by pid {held}" in err


def test_second_preflab_process_is_refused_with_exit_2(tmp_path, recipe, held):
    """The real entry point in its own process: exit 2, one line on stderr, nothing written."""
    proc = subprocess.run(
        [sys.executable, "-m", "preflab", "train", str(recipe)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert f"run directory in use by pid {held}" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


def test_quickstart_takes_the_lock(tmp_path, held):
    from preflab.pipelines import run_quickstart
    from preflab.pipelines.defaults import quickstart_defaults

    with pytest.raises(RunLockedError, match=f"pid {held}"):
        run_quickstart(quickstart_defaults([f"output_dir={tmp_path / 'run'}"]))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


def _stale_lock(run_dir) -> int:
    """A lock file naming a process that has exited; returns its pid."""
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"pid": dead.pid, "host": socket.gethostname(), "started": "2024-01-01T00:00:00"}
    (run_dir / runlock.LOCK_FILE).write_text(json.dumps(info))
    return dead.pid


def test_stale_lock_through_the_cli_is_one_warning_line(tmp_path, monkeypatch, capsys, recipe):
    pid = _stale_lock(tmp_path / "run")
    code, err = run_main(monkeypatch, capsys, "train", str(recipe))
    assert code in (0, None)
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and f"stale lock of pid {pid}" in warned[0] and "no longer running" in warned[0]
    assert (tmp_path / "run" / runlock.LOCK_FILE).read_text() == ""


def test_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path):
    pid = _stale_lock(tmp_path)
    lock = tmp_path / runlock.LOCK_FILE
    with pytest.warns(PreflabWarning, match=rf"stale lock of pid {pid} .* no longer running"):
        with runlock.run_lock(tmp_path):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
            with runlock.run_lock(tmp_path):  # re-entrant: the quickstart's train stage locks it again
                pass
            assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert lock.read_text() == ""  # a clean end leaves no holder behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ... so the next run sees nothing stale
        with runlock.run_lock(tmp_path):
            pass


def test_file_system_without_locks_warns_and_runs(tmp_path, monkeypatch):
    import errno

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runlock.fcntl, "flock", no_flock)
    with pytest.warns(PreflabWarning, match="does not support file locks"):
        with runlock.run_lock(tmp_path):
            pass
    assert runlock._held == {}
