"""The `preflab` executable's allocator choice: pure decisions, then one real re-execution."""

import os
import subprocess
import sys

import pytest

from preflab.launch import AllocatorError, allocator_env, find_allocator, preloaded

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")


def fake_finder(installed):
    return lambda name: f"/opt/lib/{name}.so" if name in installed else None


def test_auto_prefers_tcmalloc_then_jemalloc_and_keeps_existing_preloads():
    env = allocator_env({"LD_PRELOAD": "/x/libfoo.so", "PATH": "/bin"}, fake_finder({"tcmalloc", "jemalloc"}))
    assert env["LD_PRELOAD"] == "/opt/lib/tcmalloc.so /x/libfoo.so"
    assert env["PREFLAB_MALLOC_CHOSEN"] == "tcmalloc" and env["PATH"] == "/bin"
    assert env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == str(1 << 40)
    env = allocator_env({}, fake_finder({"jemalloc"}))
    assert env["LD_PRELOAD"] == "/opt/lib/jemalloc.so" and env["PREFLAB_MALLOC_CHOSEN"] == "jemalloc"
    assert allocator_env({}, fake_finder(set())) is None  # nothing installed: run on the system's malloc


def test_no_reexec_when_system_chosen_already_preloaded_or_already_reexecuted():
    both = fake_finder({"tcmalloc", "jemalloc"})
    assert allocator_env({"PREFLAB_MALLOC": "system"}, both) is None
    assert allocator_env({"PREFLAB_MALLOC_CHOSEN": "tcmalloc"}, both) is None
    assert allocator_env({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, both) is None
    assert preloaded({"LD_PRELOAD": "/a/libfoo.so:/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}) == "tcmalloc"
    assert preloaded({"LD_PRELOAD": "/a/libfoo.so"}) is None
    env = allocator_env({"PREFLAB_MALLOC": " JEMALLOC "}, both)  # an explicit choice wins over the order
    assert env["PREFLAB_MALLOC_CHOSEN"] == "jemalloc"


def test_explicit_missing_or_unknown_allocator_is_an_error_naming_the_fix():
    with pytest.raises(
        AllocatorError, match="PREFLAB_MALLOC=jemalloc: none of libjemalloc.so.2.*PREFLAB_MALLOC=system"
    ):
        allocator_env({"PREFLAB_MALLOC": "jemalloc"}, fake_finder({"tcmalloc"}))
    with pytest.raises(AllocatorError, match="'mimalloc': expected auto, system, tcmalloc, jemalloc"):
        allocator_env({"PREFLAB_MALLOC": "mimalloc"}, fake_finder(set()))


def _version(malloc: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PREFLAB_MALLOC_CHOSEN")}
    env["PREFLAB_MALLOC"] = malloc
    return subprocess.run([sys.executable, "-m", "preflab", "--version"], capture_output=True, text=True, env=env)


def test_the_command_reexecutes_under_the_installed_allocator():
    expected = next((n for n in ("tcmalloc", "jemalloc") if find_allocator(n)), "system")
    out = _version("auto")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith(f"(malloc: {expected})")
    assert _version("system").stdout.strip().endswith("(malloc: system)")
    bad = _version("nonsense")
    assert bad.returncode == 2 and bad.stderr.startswith("error: PREFLAB_MALLOC='nonsense'")


_RELEASE = """
import numpy as np
from preflab.launch import _rss_bytes, active_allocator, release_free_memory
blocks = [np.ones(1 << 15) for _ in range(1 << 12)]  # 1 GiB in 256 KiB blocks (TCMalloc keeps them)
del blocks
before = _rss_bytes()
released = release_free_memory()
print(active_allocator(), before, released, _rss_bytes())
"""


@pytest.mark.parametrize("name", ["tcmalloc", "jemalloc", "system"])
def test_release_free_memory_hands_a_freed_gigabyte_back(name):
    path = find_allocator(name) if name != "system" else None
    if name != "system" and path is None:
        pytest.skip(f"{name} is not installed")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if path:
        env["LD_PRELOAD"] = path
    out = subprocess.run([sys.executable, "-c", _RELEASE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    allocator, before, released, after = out.stdout.split()
    assert allocator == name
    before, released, after = int(before), int(released), int(after)
    assert after < 256 << 20, (before, released, after)  # the freed GiB is no longer resident
    assert abs(released - max(0, before - after)) < 16 << 20
    if name == "tcmalloc":  # it had kept the GiB: the call is what gave it back
        assert released > 512 << 20, (before, released, after)
