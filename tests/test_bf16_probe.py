"""train.bf16: auto on a CPU follows a timed probe (preflab.models.bf16), not the feature flags alone."""

import pytest
import torch

from preflab.generation.sampler import bf16_autocast_ok
from preflab.models import bf16
from preflab.training.resolve import bf16_supported, use_bf16


@pytest.fixture
def probe(monkeypatch):
    """Set the probe's hardware answer and timings: (has_bf16, fp32 seconds, bf16 seconds)."""

    def set_(has: bool, fp32: float, half: float) -> None:
        monkeypatch.setattr(bf16, "cpu_has_bf16", lambda: has)

        def fake(fn, repeats=5):  # the probe times fp32 first, then bf16
            fake.calls += 1
            return fp32 if fake.calls == 1 else half

        fake.calls = 0
        monkeypatch.setattr(bf16, "best_time", fake)
        bf16.cpu_bf16_pays.cache_clear()

    yield set_
    bf16.cpu_bf16_pays.cache_clear()


@pytest.mark.parametrize(
    ("has", "fp32", "half", "expected"),
    [
        (True, 1.0, 0.25, True),  # AMX: bf16 4x faster
        (True, 1.0, 0.79, True),  # just inside the margin
        (True, 1.0, 0.8, False),  # at the margin: keep the exact fp32
        (True, 1.6, 2.6, False),  # AVX-512 BF16 slower than MKL's sgemm (the Xeon without AMX here)
        (False, 1.0, 0.1, False),  # no bf16 instructions: never, whatever a timing says
    ],
)
def test_auto_bf16_on_cpu_follows_the_probe(probe, has, fp32, half, expected):
    probe(has, fp32, half)
    cpu = torch.device("cpu")
    assert bf16_supported(cpu) is expected
    assert use_bf16("auto", cpu) is expected
    assert use_bf16(True, cpu) is True and use_bf16(False, cpu) is False  # explicit settings win
    model = torch.nn.Linear(2, 2)  # judges' and scorers' autocast on a CPU model asks the same probe
    model.device = cpu
    assert bf16_autocast_ok(model, True) is expected
    assert bf16_autocast_ok(model, None) is False and bf16_autocast_ok(model, False) is False


def test_probe_runs_once_per_process_on_this_cpu():
    bf16.cpu_bf16_pays.cache_clear()
    first = bf16.cpu_bf16_pays()
    assert isinstance(first, bool)
    assert bf16.cpu_bf16_pays() is first
    assert bf16.cpu_bf16_pays.cache_info().hits >= 1
    if not bf16.cpu_has_bf16():
        assert first is False
