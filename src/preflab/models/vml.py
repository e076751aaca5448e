"""Intel MKL's vector math (VML) set up on one thread before PyTorch calls it from several.

PyTorch's CPU build computes cos, sin, exp, log, tanh and other elementwise functions of float tensors with MKL's
VML (its high-accuracy mode), in chunks of at least 2048 elements spread over its OpenMP threads. When the first
calls in a process run on several threads at once, VML's one-time set-up races, and now and then a call comes out
at VML's low-accuracy "EP" level instead: cos on [0, 40] up to 1.51e-4 off, exactly what ``vmsCos`` returns in EP
mode. Measured on 2026-12-07 (docs/benchmarks/2026-12-07-reproducibility.md), PyTorch 2.13 on a 2-core Xeon:

* the rotary embedding of a Llama model (cos and sin of its position table) came out 1.51e-4 off in about one
  fresh process in 100 with 2 threads; a DPO run then ends ~4e-6 away from the same run in another process;
* with 8 threads, the first ``cos`` of a 16,384-element tensor was off in 12 of 120 fresh processes, and in 0 of
  120 after one single-threaded call of each function first.

:func:`warm_vml` makes that first call on a tensor small enough for one thread, once per process, for every float
function PyTorch may route through VML; importing :mod:`preflab.models` calls it. A process that already ran such a
function on several threads before importing preflab may have raced already.
"""

from __future__ import annotations

import functools

FUNCTIONS = (
    "acos asin atan cos cosh sin sinh tan tanh exp exp2 expm1 log log10 log1p log2 erf erfc erfinv lgamma "
    "sqrt rsqrt reciprocal sigmoid"
).split()
"""Elementwise functions of float tensors that PyTorch's CPU build may compute with VML (a superset is harmless)."""


@functools.cache
def warm_vml() -> None:
    """One single-threaded call of each of :data:`FUNCTIONS` in float32 and float64 (< 10 ms, once per process)."""
    import torch

    for dtype in (torch.float32, torch.float64):
        x = torch.linspace(0.1, 0.9, 64, dtype=dtype)  # one chunk: the calling thread alone sets VML up
        for name in FUNCTIONS:
            getattr(torch, name)(x)
