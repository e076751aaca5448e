"""``kill -9`` at 10 random moments of a tiny run (mid metrics append, mid checkpoint file, between a
checkpoint's state.json and its rename, after the rename, and at random times), each followed by a resume:
the final weights equal an uninterrupted run's (issue 23). Slow: about 20 process starts.

"Equal" is within :data:`NOISE`, not bitwise. Two *uninterrupted* runs of this child in fresh processes used to
differ now and then (measured 2026-12-07 on a 2-core Xeon: about 1 process in 30–100 ended at a max abs weight
difference of 4.27e-6 after 8 steps, the value CI hit): step 1's reference log-probs were 1 ulp off because the
model's rotary cos/sin came out of MKL's vector math at its low accuracy, a race in its set-up when the first calls
run on several threads. :mod:`preflab.models.vml` now sets it up on one thread at import; the tolerance stays as
a guard against any other kernel-level difference between processes. A resume error moves the weights far more:
the smallest optimizer step of this schedule (the last, cosine-decayed) is 2.0e-4, and a resume that skips
restoring the scheduler ends 1.3e-3 to 4.9e-3 away (mutation, measured the same day)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = r'''
import os, random, signal, sys, threading, time
sys.path.insert(0, {tests!r})
from test_training_utils import make_cfg, synthetic_pairs
from preflab.models import tiny_model
from preflab.training import checkpoint as ckpt, observe, train

out, mode, n = sys.argv[1], sys.argv[2], float(sys.argv[3])
print(f"pid={{os.getpid()}}", flush=True)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def nth(fn, after):
    """Wrap fn so that its n-th call runs `after(args)` and dies."""
    count = [0]
    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == int(n):
            after(fn, *args, **kwargs)
            die()
        return fn(*args, **kwargs)
    return wrapped

def half_append(real, path, line, **_):  # half the row reaches the file, then the process dies
    with open(path, "a") as fh:
        fh.write(line[: len(line) // 2])

def half_file(real, path, write):  # the file is written, then cut to half its length
    write()
    os.truncate(path, os.path.getsize(path) // 2)

if mode == "append":
    observe.append_line = nth(observe.append_line, half_append)
elif mode == "file":
    ckpt._written = nth(ckpt._written, half_file)
elif mode == "publish":  # fsync_dir: odd calls before a checkpoint's rename, even calls after it
    ckpt.fsync_dir = nth(ckpt.fsync_dir, lambda real, *a: None)
cfg = make_cfg(out, "train.batch_size=2", "train.grad_accum=2", "train.max_steps={steps}", "train.lr=3e-3",
               "train.save_every=1", "train.keep_last=2", "train.scheduler=cosine", "train.warmup_steps=2",
               "train.max_grad_norm=1.0", "train.resume=true", "train.save_final=false")
model, tok = tiny_model()
if mode == "time":
    threading.Timer(n, die).start()
t0 = time.perf_counter()
train(cfg, records=synthetic_pairs(5), model=model, tokenizer=tok)
print(f"train_seconds={{time.perf_counter() - t0:.3f}}")
from safetensors.torch import save_file
state = {{k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}}
save_file(state, os.path.join(out, "weights.safetensors"))
'''

STEPS = 8
KILLS = 10
NOISE = 2e-5  # 5x the fresh-process difference measured before the fix; 10x below this run's smallest step


def killed_pid(proc: subprocess.CompletedProcess) -> int:
    return int(proc.stdout.split("pid=")[1].split()[0])


def _child(script: Path, out: Path, mode: str, n: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), str(out), mode, str(n)],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), steps=STEPS))
    ref = _child(script, tmp_path / "ref", "none", 0)
    assert ref.returncode == 0, ref.stderr
    train_seconds = float(ref.stdout.split("train_seconds=")[1].split()[0])
    expected = load_file(str(tmp_path / "ref" / "weights.safetensors"))

    rng = random.Random(int(os.environ.get("PREFLAB_KILL_SEED", "23")))
    moments = [
        ("append", rng.randint(2, STEPS)),
        ("append", rng.randint(2, STEPS)),
        ("file", rng.randint(1, 7 * STEPS)),
        ("file", rng.randint(1, 7 * STEPS)),
        ("publish", 2 * rng.randint(1, STEPS) - 1),
        ("publish", 2 * rng.randint(1, STEPS)),
        *[("time", round(rng.uniform(0.05, 1.0) * train_seconds, 3)) for _ in range(KILLS - 6)],
    ]
    out = tmp_path / "run"
    for mode, n in moments:
        killed = _child(script, out, mode, n)
        assert killed.returncode == -9, f"{mode} {n}: not killed ({killed.returncode}): {killed.stderr[-2000:]}"
        lock = out / ".lock"  # the killed run's holder record; emptied only by a run that ended cleanly
        held = lock.exists() and lock.read_text().strip() != ""
        # a timed kill can land after a run faster than the reference has finished and released the lock
        assert held or mode == "time", f"{mode} {n}: the killed run left no lock holder"
        resumed = _child(script, out, "none", 0)
        assert resumed.returncode == 0, f"{mode} {n}: resume failed: {resumed.stderr[-2000:]}"
        if held:  # the killed run's lock, reported
            assert f"stale lock of pid {killed_pid(killed)}" in resumed.stderr, resumed.stderr[-2000:]
        if mode == "append":  # the half row was dropped, and said so
            assert "dropped a partial last metrics row" in resumed.stderr, resumed.stderr[-2000:]
        got = load_file(str(out / "weights.safetensors"))
        assert got.keys() == expected.keys()
        diff = max((got[k].float() - expected[k].float()).abs().max().item() for k in got)
        assert diff <= NOISE, f"{mode} {n}: max abs diff {diff}"
        for p in [out / "checkpoints", out / "metrics.jsonl", out / "weights.safetensors"]:  # next moment: afresh
            subprocess.run(["rm", "-rf", str(p)], check=True)
