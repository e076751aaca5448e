"""Frozen-weight bf16 copies: bitwise the same results as autocast's own casts, released cleanly."""

from __future__ import annotations

import torch
from torch import nn

from preflab.models.casts import FrozenCasts, cached_weight


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 8, bias=False), nn.Linear(8, 4))
    net[2].requires_grad_(False)  # frozen
    net[3].requires_grad_(False)  # frozen
    return net


def test_autocast_results_are_bitwise_unchanged_and_fp32_outside_autocast():
    net, x = _net(), torch.randn(5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want_bf16 = net(x)
    want_fp32 = net(x)
    casts = FrozenCasts(net)
    assert [m for m in casts.modules] == [net[2], net[3]]  # the trainable layer keeps its own forward
    assert casts.nbytes == (32 * 8 + 8 * 4) * 2
    assert cached_weight(net[2], torch.bfloat16).dtype == torch.bfloat16
    assert cached_weight(net[0], torch.bfloat16) is None and cached_weight(net[2], torch.float16) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = net(x)
    assert got.dtype == want_bf16.dtype and torch.equal(got, want_bf16)
    assert torch.equal(net(x), want_fp32)  # no autocast: the fp32 weights
    # gradients still reach the trainable layer through the cached frozen ones
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(x).float().sum().backward()
    assert net[0].weight.grad is not None and net[2].weight.grad is None
    casts.release()
    casts.release()  # idempotent
    assert "forward" not in vars(net[2]) and cached_weight(net[2], torch.bfloat16) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(x), want_bf16)


def test_snapshot_semantics_and_skips():
    net = _net()
    casts = FrozenCasts(net)
    again = FrozenCasts(net)  # already patched layers are left alone
    assert again.modules == []
    with torch.no_grad():
        net[3].weight.add_(1.0)  # changing a frozen weight needs release() first; the copy is a snapshot
    x = torch.randn(2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        stale = net(x)
    casts.release()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = net(x)
    assert not torch.equal(stale, fresh)
    half = nn.Linear(4, 4).requires_grad_(False).to(torch.bfloat16)
    assert FrozenCasts(half).modules == []  # only fp32 weights are cast


def test_lora_input_casts_are_switched_off_and_restored():
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from preflab.models import tiny_model

    model, _ = tiny_model()
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    tuners = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    casts = FrozenCasts(model)
    assert len(casts.tuners) == len(tuners) > 0 and not any(m.cast_input_dtype_enabled for m in tuners)
    assert casts.modules  # the adapted layers' frozen base_layer weights (and the frozen head) are cast
    assert all(not m.weight.requires_grad for m in casts.modules)
    casts.release()
    assert all(getattr(m, "cast_input_dtype_enabled", True) for m in tuners)
