"""Canaries: one test per private PyTorch / transformers / accelerate API that preflab's fast paths touch.

When an upgrade moves or changes one of them, its canary fails here, naming the API and the preflab code
that needs it, instead of a speed path silently falling back or a run failing deep inside training. Each
canary checks the shape preflab relies on (the attribute, its type, its arguments), not only that it imports.
"""

from __future__ import annotations

import inspect

import torch


def test_cpu_flash_attention_kernel_exists_with_the_signature_attention_py_calls():
    """models/attention.py (the scoring SDPA) and models/compile.py (MUST_SAVE) call it directly."""
    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    q = torch.randn(1, 2, 4, 8)
    out = op(q, q, q, 0.0, True)  # (query, key, value, dropout_p, is_causal)
    assert out[0].shape == q.shape and out[1].shape == (1, 2, 4)  # output and logsumexp
    reference = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
    torch.testing.assert_close(out[0], reference, atol=1e-5, rtol=1e-5)


def test_inductor_custom_graph_pass_and_joint_pre_pass_hook_exist():
    """models/compile.py installs a joint-graph pass that keeps the flash kernel's outputs under a budget."""
    import torch._inductor.config as inductor_config
    from torch._inductor.custom_graph_pass import CustomGraphPass
    from torch.utils.checkpoint import CheckpointPolicy

    assert hasattr(inductor_config, "joint_custom_pre_pass")
    assert {"__call__", "uuid"} <= set(CustomGraphPass.__abstractmethods__)
    assert CheckpointPolicy.MUST_SAVE is not None


def test_functorch_activation_memory_budget_is_a_float_setting():
    """models/compile.py sets it for train.compile_memory_budget."""
    import torch._functorch.config as functorch_config

    assert isinstance(functorch_config.activation_memory_budget, float)


def test_module_compile_sets_compiled_call_impl():
    """models/compile.is_compiled reads nn.Module's private _compiled_call_impl."""
    layer = torch.nn.Linear(2, 2)
    assert getattr(layer, "_compiled_call_impl", "missing") is None
    layer.compile()
    assert layer._compiled_call_impl is not None


def test_accelerate_state_reset_takes_reset_partial_state():
    """training/build.py resets AcceleratorState between runs in one process (tests, notebooks)."""
    from accelerate.state import AcceleratorState

    assert "reset_partial_state" in inspect.signature(AcceleratorState._reset_state).parameters


def test_transformers_attention_registry_has_a_local_mapping_and_configs_name_their_attention():
    """models/attention.py swaps 'sdpa' in ALL_ATTENTION_FUNCTIONS._local_mapping for one forward; logprobs.py
    and attention.py read config._attn_implementation."""
    from transformers import LlamaConfig
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert isinstance(ALL_ATTENTION_FUNCTIONS._local_mapping, dict)
    config = LlamaConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=32,
        attn_implementation="sdpa",
    )
    assert config._attn_implementation == "sdpa"


def test_swapping_sdpa_in_the_local_mapping_reaches_a_model_forward(tiny):
    """The mechanism scoring_attention relies on: a function put under 'sdpa' is what the model calls."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    model, _ = tiny
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        model.config._attn_implementation = "sdpa"
    calls = []
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    local = ALL_ATTENTION_FUNCTIONS._local_mapping
    had, before = "sdpa" in local, local.get("sdpa")
    local["sdpa"] = spy
    try:
        with torch.no_grad():
            model(torch.tensor([[1, 2, 3]]))
    finally:
        if had:
            local["sdpa"] = before
        else:
            local.pop("sdpa", None)
    assert calls  # one call per layer


def test_torch_cpu_reports_bf16_hardware_through_its_private_checks():
    """training/resolve.bf16_supported and generation's CPU bf16 check read torch.cpu's private feature probes;
    without them bf16 would silently turn off on AMX / AVX512-BF16 CPUs."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        assert isinstance(getattr(torch.cpu, name)(), bool), name
