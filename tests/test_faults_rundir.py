"""Fault injection on run directories (issue 23, items 2, 3 and 9; item 4 in test_faults_lock.py): a partial
metrics line, a full disk, damaged or incomplete checkpoints. Each fault ends in recovery (the
resumed run equals an uninterrupted one) or in a one-line error that names the path; nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import warnings

import pytest
import torch

from fault_helpers import STEPS, Killed, run_cli, run_tiny, write_recipe
from preflab import durable
from preflab.errors import CheckpointError, DataError, PreflabWarning, StorageError
from preflab.models import tiny_model
from preflab.training import checkpoint as ckpt
from preflab.training import read_metrics
from preflab.training.observe import MetricsWriter, read_metrics_rows
from test_training_utils import max_abs_diff, state


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run: final weights and train metrics."""
    out = tmp_path_factory.mktemp("whole")
    model, _ = run_tiny(out)
    return state(model), read_metrics(out / "metrics.jsonl", "train")


def _killed(out, at: int = 5, *extra: str) -> None:
    with pytest.raises(Killed):
        run_tiny(out, *extra, kill_at=at)


def _assert_equals_whole(model, out, whole) -> None:
    weights, rows = whole
    assert max_abs_diff(weights, state(model)) == 0.0
    resumed = read_metrics(out / "metrics.jsonl", "train")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in resumed] == [r["loss"] for r in rows]


# ---------------------------------------------------------------- (2) crash-safe metrics log


def test_partial_last_metrics_line_is_dropped_and_reported_on_resume(tmp_path, whole):
    _killed(tmp_path, 3)  # checkpoint at step 2; metrics rows 1..3
    metrics = tmp_path / "metrics.jsonl"
    complete = metrics.read_text().splitlines()
    with metrics.open("a") as fh:
        fh.write('{"step": 4, "split": "train", "loss": 0.69')  # kill -9 in the middle of an append
    with pytest.warns(PreflabWarning, match=rf"metrics\.jsonl, line {len(complete) + 1}: dropped a partial"):
        model, result = run_tiny(tmp_path, resume=True)
    assert result.resumed_from == 2
    _assert_equals_whole(model, tmp_path, whole)
    assert metrics.read_text().endswith("\n")


def test_reader_keeps_every_complete_row_before_a_partial_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "split": "train", "loss": 1.0 / i} for i in range(1, 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\x00\x00\x00")  # a tail of NULs after a crash
    with pytest.warns(PreflabWarning, match="line 4"):
        assert read_metrics_rows(path) == rows
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))  # no partial line: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_metrics_rows(path) == rows


def test_damaged_metrics_line_before_the_last_is_a_one_line_error(tmp_path):
    _killed(tmp_path, 3)
    metrics = tmp_path / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[1] = lines[1][:20]
    metrics.write_text("\n".join(lines) + "\n")
    before = metrics.read_bytes()
    with pytest.raises(DataError, match=r"metrics\.jsonl, line 2: damaged metrics row") as err:
        run_tiny(tmp_path, resume=True)
    assert "\n" not in str(err.value)
    assert metrics.read_bytes() == before  # nothing rewritten


# ---------------------------------------------------------------- (3) disk full


class _FillsUp:
    """A file whose next write stores half its bytes, then fails with ENOSPC (the disk filled up mid-row)."""

    def __init__(self, fh):
        self.fh = fh

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_append_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    log = MetricsWriter(path)
    log.write(1, "train", {"loss": 0.5})
    before = path.read_bytes()
    real_open = type(path).open
    monkeypatch.setattr(type(path), "open", lambda self, mode="r", *a, **k: _FillsUp(real_open(self, mode, *a, **k)))
    with pytest.raises(StorageError, match=r"metrics\.jsonl: cannot write: disk full \(No space left on device\)"):
        log.write(2, "train", {"loss": 0.4})
    monkeypatch.undo()
    assert path.read_bytes() == before  # cut back to the last complete row
    assert read_metrics_rows(path) == [json.loads(before)]


def test_metrics_log_syncs_before_each_checkpoint(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(MetricsWriter, "sync", lambda self: synced.append(len(self.path.read_text().splitlines())))
    run_tiny(tmp_path)
    assert synced == [2, 4, 6]  # rows on disk when checkpoints 2, 4 and 6 were written


def _dev_full_fails() -> bool:
    try:
        fd = os.open("/dev/full", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"x")
    except OSError as exc:
        return exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return False  # some sandboxes' /dev/full accepts writes


@pytest.mark.skipif(not _dev_full_fails(), reason="no /dev/full that fails writes with ENOSPC")
def test_append_to_a_full_device_is_a_storage_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC, from the kernel
    with pytest.raises(StorageError, match=r"metrics\.jsonl: cannot write: disk full"):
        durable.append_line(path, '{"step": 1}')


def _enospc_on(monkeypatch, step: int) -> None:
    """Make the model file of checkpoint ``step`` fail with ENOSPC (the disk fills up during that save)."""
    real = ckpt.save_file

    def save_file(tensors, filename, metadata=None):
        if f"step-{step:08d}" in filename and filename.endswith("model.safetensors"):
            with open(filename, "wb") as fh:
                fh.write(b"\0" * 100)  # what fitted before the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch, whole):
    _enospc_on(monkeypatch, 4)
    with pytest.raises(StorageError) as err:
        run_tiny(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "disk full (No space left on device)" in msg
    assert ".tmp-step-00000004/model.safetensors: cannot write checkpoint file" in msg
    assert msg.endswith("the last good checkpoint is " + str(tmp_path / "checkpoints" / "step-00000002"))
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the half-written one freed its space
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "checkpoints")] == [2]
    assert ckpt.check_checkpoint(tmp_path / "checkpoints" / "step-00000002") is None
    monkeypatch.undo()  # space freed: the run resumes from step 2 and ends as if never interrupted
    model, result = run_tiny(tmp_path, resume=True)
    assert result.resumed_from == 2
    _assert_equals_whole(model, tmp_path, whole)


@pytest.fixture
def recipe(tmp_path, tiny_dir):
    return write_recipe(tmp_path, tiny_dir)


def test_disk_full_through_the_cli_is_exit_2_and_one_line(tmp_path, monkeypatch, capsys, recipe):
    _enospc_on(monkeypatch, 1)
    code, err = run_cli(monkeypatch, capsys, "train", str(recipe))
    assert code == 2
    assert "model.safetensors: cannot write checkpoint file: disk full" in err
    assert err.endswith("no checkpoint was written")


def test_disk_full_anywhere_in_a_run_is_a_storage_error(tmp_path, monkeypatch):
    """A write without its own guard (here config.yaml) still ends as one line naming the file."""
    real = type(tmp_path).write_text

    def write_text(self, *args, **kwargs):
        if self.name == "config.yaml":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "write_text", write_text)
    with pytest.raises(StorageError, match=r"config\.yaml: cannot write: disk full"):
        run_tiny(tmp_path)


# ---------------------------------------------------------------- (9) checkpoints: checksums and fallback


def _flip_byte(path, offset: int = -17) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, reason",
    [
        pytest.param(
            lambda d: _flip_byte(d / "model.safetensors"),
            "model.safetensors does not match its checksum",
            id="flipped-byte-model",
        ),
        pytest.param(
            lambda d: os.truncate(d / "rng-rank0.safetensors", 40),
            "rng-rank0.safetensors does not match",
            id="truncated-rng",
        ),
        pytest.param(lambda d: (d / "rng-rank0.json").unlink(), "rng-rank0.json is missing", id="missing-rng"),
        pytest.param(lambda d: (d / "state.json").unlink(), "no state.json", id="no-state-json"),
        pytest.param(
            lambda d: (d / "state.json").write_text(
                (d / "state.json").read_text().replace('"position": 8', '"position": 6')
            ),
            "state.json does not match its checksum",
            id="edited-state",
        ),
    ],
)
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, whole, damage, reason):
    _killed(tmp_path, 5)  # checkpoints at steps 2 and 4
    root = tmp_path / "checkpoints"
    damage(root / "step-00000004")
    assert reason in (ckpt.check_checkpoint(root / "step-00000004") or "")
    with pytest.warns(PreflabWarning, match=rf"step-00000004 is unusable: {reason}.*falls back to .*step-00000002"):
        model, result = run_tiny(tmp_path, resume=True)
    assert result.resumed_from == 2
    _assert_equals_whole(model, tmp_path, whole)
    assert (root / "step-00000004.invalid").is_dir()  # kept for inspection, never loaded or pruned
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [4, 6]


def test_no_intact_checkpoint_is_an_error_that_keeps_the_metrics(tmp_path):
    _killed(tmp_path, 3)  # one checkpoint, step 2
    (tmp_path / "checkpoints" / "step-00000002" / "rng-rank0.safetensors").unlink()
    (tmp_path / "checkpoints" / "step-00000003").mkdir()  # an interrupted write, no state.json
    before = (tmp_path / "metrics.jsonl").read_bytes()
    with pytest.raises(CheckpointError) as err:
        run_tiny(tmp_path, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "checkpoints") + ": no intact checkpoint")
    assert "step-00000003: no state.json" in msg and "step-00000002: rng-rank0.safetensors is missing" in msg
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_load_checkpoint_verifies_by_default(tmp_path):
    _killed(tmp_path, 3)
    path = tmp_path / "checkpoints" / "step-00000002"
    _flip_byte(path / "optimizer.safetensors")
    model, _ = tiny_model()
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    with pytest.raises(CheckpointError, match="optimizer.safetensors does not match its checksum"):
        ckpt.load_checkpoint(path, optimizer=opt, scheduler=sched)


def test_checkpoint_records_a_checksum_per_file(tmp_path):
    _killed(tmp_path, 3)
    path = tmp_path / "checkpoints" / "step-00000002"
    st = json.loads((path / "state.json").read_text())
    assert st["format"] == ckpt.FORMAT
    assert sorted(st["files"]) == sorted(ckpt.required_files(st))
    assert all(st["files"][n] == ckpt.sha256_file(path / n) for n in st["files"])
