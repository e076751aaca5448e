"""How many CPU threads PyTorch uses: a default that does not collapse when the CPU is shared.

PyTorch starts one OpenMP thread per logical CPU. When another process keeps some of those CPUs busy, every
parallel region waits for its slowest thread, which only runs when the scheduler gives it a slice: on this
project's 2-core machines a 10-step DPO recipe took 13 minutes with the default threads next to a busy
process and 77 seconds with one thread. The default chosen here is the CPUs this process may run on
(``sched_getaffinity``), counted as physical cores where SMT siblings share one, minus the CPUs that other
processes keep busy (the 1-minute load average, rounded), and at least one.

``OMP_NUM_THREADS`` (or ``PREFLAB_THREADS``) set by the user always wins. The command line applies the choice
before PyTorch is imported (:func:`apply_default`) and the training loop prints it at start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_SOURCE_ENV = "PREFLAB_THREADS_SOURCE"  # how the thread count was chosen, for the start-up line


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int], cpuinfo: str | None = None) -> int:
    """How many distinct physical cores ``cpus`` span (SMT siblings count once); ``len(cpus)`` when unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return len(cpus)
    cores: dict[int, tuple[str, str]] = {}
    for block in cpuinfo.strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "processor" in fields and "core id" in fields:
            cores[int(fields["processor"])] = (fields.get("physical id", "0"), fields["core id"])
    if not cores or any(cpu not in cores for cpu in cpus):
        return len(cpus)
    return len({cores[cpu] for cpu in cpus})


def choose_threads(cpus: int, physical: int, load: float) -> ThreadChoice:
    """The default thread count for ``cpus`` allowed logical CPUs on ``physical`` cores with ``load`` (the
    1-minute load average of the other processes)."""
    busy = min(cpus, round(load))
    threads = max(1, min(physical, cpus - busy))
    reason = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if physical < cpus:
        reason += f" on {physical} physical cores"
    if busy:
        reason += f", {busy} kept busy by other processes (load {load:.1f})"
    return ThreadChoice(threads, reason)


def default_threads() -> ThreadChoice:
    """:func:`choose_threads` for this process and machine now."""
    cpus = allowed_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return choose_threads(len(cpus), physical_cores(cpus), load)


def apply_default(env: dict[str, str] | os._Environ = os.environ) -> None:
    """Set ``OMP_NUM_THREADS`` to the default unless the user set it (``PREFLAB_THREADS`` sets it too).

    Call before importing torch: PyTorch sizes its thread pool from ``OMP_NUM_THREADS`` at import."""
    if env.get("PREFLAB_THREADS"):
        env["OMP_NUM_THREADS"] = env["PREFLAB_THREADS"]
        env[_SOURCE_ENV] = "PREFLAB_THREADS"
    elif env.get("OMP_NUM_THREADS"):
        env.setdefault(_SOURCE_ENV, "OMP_NUM_THREADS")
    else:
        choice = default_threads()
        env["OMP_NUM_THREADS"] = str(choice.threads)
        env[_SOURCE_ENV] = choice.reason


def describe() -> str:
    """One line for the start of a run: the threads in use and why."""
    import torch

    source = os.environ.get(_SOURCE_ENV)
    why = f"set by {source}" if source in ("PREFLAB_THREADS", "OMP_NUM_THREADS") else (source or "PyTorch's default")
    return f"threads: {torch.get_num_threads()} ({why}; override with PREFLAB_THREADS=N)"
