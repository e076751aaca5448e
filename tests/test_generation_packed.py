"""Prepacked linear weights for CPU decoding (``preflab.generation.packed``): the same outputs as the plain
layers, the modules restored after the block, the plain path for gradients and for large inputs."""

from __future__ import annotations

import pytest
import torch

from preflab.generation.packed import packed_linears, packing_available

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN linear ops")


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_packed_model_gives_the_plain_models_logits_and_is_restored(tiny):
    model, _ = tiny
    ids = torch.tensor([[5, 9, 33, 2], [7, 7, 1, 40]])
    ref = _logits(model, ids)
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert linears
    with packed_linears(model, rows_hint=8) as m:
        assert all("forward" in lin.__dict__ for lin in linears)  # every linear runs the packed product
        got = _logits(m, ids)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert all("forward" not in lin.__dict__ for lin in linears)


def test_packed_bf16_product_matches_linear_and_large_inputs_take_the_plain_path():
    lin = torch.nn.Linear(64, 96, bias=True).to(torch.bfloat16)
    x = torch.randn(16, 1, 64, dtype=torch.bfloat16)
    big = torch.randn(600, 64, dtype=torch.bfloat16)
    if not packing_available("bfloat16"):  # an AVX2-only CPU: bf16 layers keep their own forward, same product
        with torch.no_grad(), packed_linears(lin, rows_hint=16):
            assert "forward" not in lin.__dict__
            got = lin(x)
        assert torch.equal(got, lin(x).detach())
        return
    with torch.no_grad():
        ref, ref_big = lin(x), lin(big)
        with packed_linears(lin, rows_hint=16, max_rows=512):
            got = lin(x)
            calls = []
            real = torch.nn.functional.linear
            torch.nn.functional.linear = lambda *a: calls.append(1) or real(*a)
            try:
                got_big = lin(big)
                lin(x)
            finally:
                torch.nn.functional.linear = real
    torch.testing.assert_close(got.float(), ref.float(), rtol=1e-2, atol=1e-2)
    assert torch.equal(got_big, ref_big) and calls == [1]  # 600 rows > max_rows: F.linear; 16 rows: packed


def test_gradients_flow_through_the_plain_path_inside_the_block():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with packed_linears(lin):
        lin(x).sum().backward()
    assert lin.weight.grad is not None
    torch.testing.assert_close(lin.weight.grad, x.sum(0).expand(4, -1))
