"""How many CPU threads PyTorch uses: a default that does not collapse when the CPU is shared.

PyTorch starts one OpenMP thread per logical CPU. When another process keeps some of those CPUs busy, every
parallel region waits for its slowest thread, which only runs when the scheduler gives it a slice: on this
project's 2-core machines a 10-step DPO recipe took 13 minutes with the default threads next to a busy
process and 77 seconds with one thread. The default chosen here is the CPUs this process may run on
(``sched_getaffinity``), counted as physical cores where SMT siblings share one, minus the CPUs that other
processes keep busy, and at least one. "Busy" is measured, not averaged: the share of each allowed CPU's time
spent outside idle over a quarter of a second at start (``/proc/stat``), summed and rounded, while this process
sleeps. The 1-minute load average, used where ``/proc/stat`` is missing, trails by a minute and counts processes
that just ended (``make demo``'s own install step would have halved the demo's threads).

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
    CPUs other processes keep busy)."""
    busy = min(cpus, round(load))
    threads = max(1, min(physical, cpus - busy))
    reason = f"{cpus} CPU{'s' if cpus != 1 else ''}"
    if physical < cpus:
        reason += f" on {physical} physical cores"
    if busy:
        reason += f", {busy} kept busy by other processes ({load:.1f} CPUs busy)"
    return ThreadChoice(threads, reason)


def cpu_times(stat: str, cpus: list[int]) -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks of each of ``cpus`` from the text of ``/proc/stat``."""
    out: dict[int, tuple[int, int]] = {}
    for line in stat.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_cpus(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    """How many CPUs' worth of time was spent outside idle between two :func:`cpu_times` readings."""
    busy = 0.0
    for cpu, (b1, t1) in after.items():
        b0, t0 = before.get(cpu, (b1, t1))
        if t1 > t0:
            busy += (b1 - b0) / (t1 - t0)
    return busy


def measured_load(cpus: list[int], window_s: float = 0.25) -> float | None:
    """CPUs kept busy by other processes now (this one sleeps while it measures); None without /proc/stat."""
    import time

    stat = Path("/proc/stat")
    try:
        before = cpu_times(stat.read_text(), cpus)
        time.sleep(window_s)
        after = cpu_times(stat.read_text(), cpus)
    except OSError:
        return None
    return busy_cpus(before, after) if after else None


def default_threads() -> ThreadChoice:
    """:func:`choose_threads` for this process and machine now."""
    cpus = allowed_cpus()
    load = measured_load(cpus)
    if load is None:
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
