"""Whether bf16 matmuls pay on this CPU: a timed probe, not a feature flag.

The CPU feature flags say whether bf16 matmuls *run*, not whether they are faster than fp32 ones. On this
project's 2-core machine images with PyTorch 2.13 (docs/benchmarks; the last item measured with
``bench/rl_throughput.py`` and a SmolLM2-135M fwd + bwd + AdamW step on 16 completions sharing 2 prompts):

* Intel Xeon with AMX: bf16 matmuls reach 2.2–2.7 TFLOP/s (1.4 on one thread, against 0.18 for fp32);
* AMD EPYC with AVX-512 BF16, no AMX: 0.89–0.97 TFLOP/s bf16;
* Intel Xeon with AVX-512 BF16 whose AMX the VM hides (2026-12-06): bf16 ~0.15–0.2 TFLOP/s against
  0.27–0.38 for fp32 (MKL's sgemm beats oneDNN's AVX-512 BF16 kernel), and the training step took 5.2 s under
  bf16 autocast against 3.6 s in fp32.

So ``train.bf16: auto`` (and the judges' and scorers' bf16 autocast on a CPU) asks :func:`cpu_bf16_pays`: the
CPU has bf16 instructions (AVX-512 BF16 or AMX) and a (256×576)·(576×1536) product, best of five, runs in bf16
in under :data:`MARGIN` of its fp32 time. The probe takes ~40 ms once per process; the margin keeps a CPU
where both are close on the exact fp32 side, so the answer does not flip between runs.
"""

from __future__ import annotations

import functools
import time

MARGIN = 0.8
"""bf16 must take under this fraction of the fp32 time."""

SHAPE = (256, 576, 1536)
"""(rows, in, out) of the probe: a decoder-sized projection of a training micro-batch."""


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX tiles, as torch's CPU feature probes report them."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def best_time(fn, repeats: int = 5) -> float:
    """The fastest of ``repeats`` timed calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@functools.cache
def cpu_bf16_pays() -> bool:
    """True when this CPU has bf16 instructions and a bf16 matmul beats fp32 by the margin (module docstring)."""
    import torch

    if not cpu_has_bf16():
        return False
    rows, k, n = SHAPE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(rows, k, generator=gen), torch.randn(k, n, generator=gen)
    a16, b16 = a.bfloat16(), b.bfloat16()
    with torch.no_grad():
        fp32 = best_time(lambda: torch.matmul(a, b))
        bf16 = best_time(lambda: torch.matmul(a16, b16))
    return bf16 < MARGIN * fp32


def bf16_pays(device) -> bool:
    """bf16 autocast pays off on ``device``: a CUDA GPU with bf16, or a CPU for which :func:`cpu_bf16_pays`."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_bf16_pays()
