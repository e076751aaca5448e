"""The policy's trainable weights live in memory of their own, not in the checkpoint file's copy-on-write
mapping (whose first optimizer write faults every page in: seconds on a 135M model)."""

import sys

import pytest
import torch

from preflab.config import load_config
from preflab.training.build import load_policy, own_trainable_weights

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def file_mappings() -> list[tuple[int, int, str]]:
    """(start, end, path) of this process's mappings of files under a model directory."""
    out = []
    with open("/proc/self/maps", encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and parts[5].endswith(".safetensors"):
                start, end = (int(x, 16) for x in parts[0].split("-"))
                out.append((start, end, parts[5]))
    return out


def mapped(param: torch.Tensor, maps) -> bool:
    ptr = param.data_ptr()
    return any(start <= ptr < end for start, end, _ in maps)


def test_loaded_weights_are_file_mapped_and_the_policy_copies_the_trainable_ones(tiny_dir, tmp_path):
    from preflab.models import load_model

    plain = load_model(str(tiny_dir))
    maps = file_mappings()
    if not any(mapped(p, maps) for p in plain.parameters()):
        pytest.skip("this transformers/safetensors build copies weights at load time: nothing to own")
    cfg = load_config(None, [f"model.name_or_path={tiny_dir}", f"output_dir={tmp_path}", "lora.enabled=false"])
    policy, _ = load_policy(cfg)
    maps = file_mappings()
    params = list(policy.parameters())
    assert params and all(p.requires_grad for p in params)
    assert not any(mapped(p, maps) for p in params)
    for (name, p), q in zip(policy.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(p, q), name  # the same values


def test_own_trainable_weights_keeps_ties_and_frozen_weights(tiny):
    model, _ = tiny
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    copy.tie_weights()
    tied = copy.get_output_embeddings().weight is copy.get_input_embeddings().weight
    frozen = copy.model.layers[0].mlp.up_proj.weight
    frozen.requires_grad_(False)
    before = frozen.data_ptr()
    n = own_trainable_weights(copy)
    assert n == sum(1 for p in copy.parameters() if p.requires_grad)
    assert frozen.data_ptr() == before  # not copied
    if tied:
        assert copy.get_output_embeddings().weight is copy.get_input_embeddings().weight
    for (name, p), q in zip(copy.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
