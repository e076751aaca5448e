"""The ``preflab`` executable: pick a caching memory allocator, then run the command line.

PyTorch on CPU frees and re-allocates tensors of the same sizes every step. glibc's malloc returns
every block over its mmap threshold (at most 32 MiB, so every vocabulary-sized tensor) to the kernel on
free, and the next step pays a page fault per 4 KiB page to get it back (100k–400k faults per DPO step
of SmolLM2-135M here); below the threshold it fragments. TCMalloc and jemalloc keep freed pages for
reuse, which PyTorch's CPU performance guide recommends for training. The allocator has to be chosen
before the process starts, so :func:`main` re-executes the same command once with the library in
``LD_PRELOAD`` when one is installed (Debian: ``libtcmalloc-minimal4`` or ``libjemalloc2``).

``PREFLAB_MALLOC`` picks it: ``auto`` (default: TCMalloc, else jemalloc, else the system's),
``tcmalloc``, ``jemalloc`` (an error if missing), or ``system`` (never re-execute). A library already in
``LD_PRELOAD`` is left alone. Code that imports preflab as a library runs with the allocator its own
process has (set ``LD_PRELOAD`` yourself to get the same effect).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

ALLOCATORS: dict[str, tuple[str, ...]] = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "jemalloc": ("libjemalloc.so.2",),
}
_LINK_NAMES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
# "libjemalloc.so": how each library's file name starts, whatever its version suffix
_STEMS = {name: tuple(lib.split(".so")[0] + ".so" for lib in libs) for name, libs in ALLOCATORS.items()}
_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)
_GUARD = "PREFLAB_MALLOC_CHOSEN"  # set in the re-executed process, so it never loops
# TCMalloc reports every allocation over 1 GiB on stderr; loading a model makes a few of them.
_QUIET = {"TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}


class AllocatorError(RuntimeError):
    """``PREFLAB_MALLOC`` names an allocator that is not installed or not known."""


def find_allocator(name: str) -> str | None:
    """The path of allocator ``name``'s shared library, or None if it is not installed."""
    for directory in _LIB_DIRS:
        for lib in ALLOCATORS[name]:
            path = Path(directory) / lib
            if path.is_file():
                return str(path)
    for link in _LINK_NAMES[name]:  # elsewhere on the loader's path (conda, Nix, ...)
        found = ctypes.util.find_library(link)
        if found and found in ALLOCATORS[name]:
            return found
    return None


def preloaded(env: Mapping[str, str]) -> str | None:
    """The allocator already named in ``env``'s ``LD_PRELOAD``, if any."""
    entries = env.get("LD_PRELOAD", "").replace(":", " ").split()
    for name, stems in _STEMS.items():
        if any(Path(e).name.startswith(stems) for e in entries):
            return name
    return None


def allocator_env(env: Mapping[str, str], finder=find_allocator) -> dict[str, str] | None:
    """The environment to re-execute with, or None to run as is.

    Pure apart from ``finder``: reads ``PREFLAB_MALLOC`` and ``LD_PRELOAD`` from ``env``."""
    choice = env.get("PREFLAB_MALLOC", "auto").strip().lower() or "auto"
    if choice not in ("auto", "system", *ALLOCATORS):
        raise AllocatorError(f"PREFLAB_MALLOC={choice!r}: expected auto, system, {', '.join(ALLOCATORS)}")
    if choice == "system" or env.get(_GUARD) or preloaded(env) or not sys.platform.startswith("linux"):
        return None
    for name in ALLOCATORS if choice == "auto" else (choice,):
        path = finder(name)
        if path:
            new = dict(env)
            new["LD_PRELOAD"] = " ".join(p for p in (path, env.get("LD_PRELOAD", "")) if p)
            new[_GUARD] = name
            for key, value in _QUIET.items():
                new.setdefault(key, value)
            return new
    if choice != "auto":
        raise AllocatorError(
            f"PREFLAB_MALLOC={choice}: none of {', '.join(ALLOCATORS[choice])} is installed "
            f"(searched {', '.join(_LIB_DIRS)} and the loader's path); "
            "install it or set PREFLAB_MALLOC=system"
        )
    return None


def active_allocator() -> str:
    """The allocator mapped into this process: ``tcmalloc``, ``jemalloc`` or ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name, stems in _STEMS.items():
        if any(stem in maps for stem in stems):
            return name
    return "system"


def release_free_memory() -> int:
    """Hand the pages the allocator keeps for reuse back to the kernel; returns the bytes of resident memory
    that went (0 where nothing could be released).

    A caching allocator keeps what a finished stage freed (a sampling call's KV cache, a training run's
    activations) and reuses it only for blocks of the same sizes, so a pipeline whose stages allocate
    differently grows stage after stage (the four-round quickstart's sampling: 3.2 GB in round 1, 6.4 GB in round 4
    under TCMalloc on one CPU). Called between stages, it keeps a stage from starting on the last one's cache. TCMalloc:
    ``MallocExtension_ReleaseFreeMemory``; jemalloc: purge every arena; glibc: ``malloc_trim(0)``."""
    import gc

    gc.collect()  # models in reference cycles (modules point at their parents' hooks) go first
    before = _rss_bytes()
    name = active_allocator()
    try:
        lib = ctypes.CDLL(None)  # the symbols already loaded into this process
        if name == "tcmalloc":
            lib.MallocExtension_ReleaseFreeMemory()
        elif name == "jemalloc":
            arenas_all = 4096  # MALLCTL_ARENAS_ALL
            lib.mallctl(f"arena.{arenas_all}.purge".encode(), None, None, None, ctypes.c_size_t(0))
        else:
            lib.malloc_trim(ctypes.c_size_t(0))
    except (AttributeError, OSError, TypeError):  # not glibc (musl, macOS, Windows) or no such entry point
        return 0
    return max(0, before - _rss_bytes())


def _rss_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def reexec(env: Mapping[str, str] | None) -> None:
    """Re-execute this process's command line under ``env`` (from :func:`allocator_env`); None: return."""
    if env is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, list(sys.orig_argv), env)


def main() -> None:
    """Console-script entry: re-execute once under a caching allocator if one is installed, then run."""
    try:
        env = allocator_env(os.environ)
    except AllocatorError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    reexec(env)
    from .threads import apply_default

    apply_default()  # before torch is imported: it sizes its thread pool from OMP_NUM_THREADS then
    from .cli import main as cli_main

    cli_main()
