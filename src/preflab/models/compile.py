"""Regional compilation: ``torch.compile`` the repeated decoder block once and reuse it for every layer.

Compiling the whole model traces every layer and takes minutes on a CPU; compiling each block with
``nn.Module.compile`` lets dynamo reuse one graph for all of them (their parameters are graph inputs),
which is PyTorch's recommended way to cut cold-start compile time ("regional compilation"). Inductor then
fuses each block's elementwise work (RMSNorm, RoPE, SwiGLU, the bf16 casts of autocast) into a few
kernels and saves fewer activations for backward. ``dynamic=True`` keeps one graph across batch shapes.

``nn.Module.compile`` stores the compiled callable on the module, bound to *that* module: a deep copy of
a compiled model would run the original's weights. :func:`compile_blocks` is therefore applied to each
model separately (a frozen reference copy is compiled on its own, never copied from a compiled policy).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

import torch
from torch import nn

_HOOK = "_preflab_block_input_hook"

# Kernels the compiled backward must save, never recompute, although PyTorch's partitioner does not know them as
# expensive: the CPU flash-attention forward (~135 GFLOP/s on SmolLM2's rows against ~880 for the block's
# matmuls; AMD EPYC, 2 cores, torch 2.13).
MUST_SAVE = (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,)


@functools.cache
def _save_slow_kernels() -> Any:
    """A joint-graph pass that marks :data:`MUST_SAVE` kernels' nodes so the partitioner keeps their outputs.

    Under a memory budget below 1 (:func:`compile_blocks`) the partitioner recomputes in backward whatever its
    op lists do not call compute-intensive, and the CPU flash kernel is not on them (the CUDA ones are): every
    layer's backward re-ran the attention forward, 30 extra calls, ~170 ms of a 2.0 s SmolLM2-135M full
    fine-tuning step.
    """
    from torch._inductor.custom_graph_pass import CustomGraphPass
    from torch.utils.checkpoint import CheckpointPolicy

    class SaveSlowKernels(CustomGraphPass):
        def __call__(self, graph: torch.fx.Graph) -> None:
            for node in graph.nodes:
                if node.op == "call_function" and getattr(node.target, "overloadpacket", None) in MUST_SAVE:
                    node.meta["recompute"] = CheckpointPolicy.MUST_SAVE

        def uuid(self) -> Any:
            return f"preflab-save-slow-kernels-1:{[str(k) for k in MUST_SAVE]}"

    return SaveSlowKernels()


def _install_joint_pass() -> None:
    """Add :func:`_save_slow_kernels` to inductor's ``joint_custom_pre_pass`` (once; a pass already there stays)."""
    import torch._inductor.config as inductor_config

    current = inductor_config.joint_custom_pre_pass
    passes = list(current) if isinstance(current, (list, tuple)) else ([] if current is None else [current])
    if _save_slow_kernels() not in passes:
        inductor_config.joint_custom_pre_pass = [*passes, _save_slow_kernels()]


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks: the children of the largest ``nn.ModuleList`` whose children share one class."""
    best: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > len(best):
            kinds = Counter(type(child) for child in module)
            if len(kinds) == 1:
                best = list(module)
    return best


def is_compiled(module: nn.Module) -> bool:
    """True when ``module`` or one of its submodules was compiled in place with ``nn.Module.compile``."""
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in module.modules())


def compile_blocks(model: nn.Module, dynamic: bool = True, memory_budget: float | None = None) -> int:
    """Compile every repeated block of ``model`` in place; returns how many (0 when none was found).

    ``memory_budget`` sets PyTorch's ``activation_memory_budget`` (process-wide, read when a graph compiles,
    i.e. at the block's first forward): the share of the saved-activation memory the compiled backward keeps;
    below 1 the partitioner recomputes cheap (pointwise) ops in backward instead of saving their outputs, and a
    joint-graph pass (:func:`_save_slow_kernels`) keeps it from recomputing the kernels of :data:`MUST_SAVE`.
    """
    if memory_budget is not None:
        if not 0 < memory_budget <= 1:
            raise ValueError(f"memory_budget must be in (0, 1], got {memory_budget}")
        import torch._functorch.config

        torch._functorch.config.activation_memory_budget = float(memory_budget)
        _install_joint_pass()
    blocks = repeated_blocks(model)
    for block in blocks:
        block.compile(dynamic=dynamic)
    if blocks and getattr(model, _HOOK, None) is None:
        setattr(model, _HOOK, align_block_inputs(model))
    return len(blocks)


def align_block_inputs(model: nn.Module) -> Any:
    """With a frozen input embedding and trainable weights elsewhere (LoRA), make the embedding's output require
    grad in grad mode; returns the hook's handle, or None when nothing needs it.

    Dynamo guards on whether a block's input requires grad: with LoRA the first block's input (the frozen
    embedding's output) does not and every later one does, so the first block would get a compiled graph of
    its own, one more cold compile (~40% of a SmolLM2 LoRA run's). Marking that input costs one unused
    gradient of the embedding output."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    if embedding is None or any(p.requires_grad for p in embedding.parameters()):
        return None
    if not any(p.requires_grad for p in model.parameters()):
        return None

    def mark(module: nn.Module, args: Any, output: Any) -> None:
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and not output.requires_grad:
            output.requires_grad_(True)

    return embedding.register_forward_hook(mark)


def uncompile(model: nn.Module) -> nn.Module:
    """Drop in-place compilation from ``model`` and its submodules (e.g. on a deep copy), and the input hook
    :func:`compile_blocks` added."""
    hook = getattr(model, _HOOK, None)
    if hook is not None:
        hook.remove()
        setattr(model, _HOOK, None)
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
    return model
