"""The contract every offline / reward-model objective keeps: registered by name with default-constructible
hyperparameters and a docstring citing its paper; a finite 0-dim loss that gradients flow through; detached
scalar metrics including ``loss``; reference-free objectives run without reference log-probs."""

from __future__ import annotations

import re

import pytest
import torch

from preflab.objectives import (
    REGISTRY,
    DemonstrationInputs,
    PairInputs,
    PreferenceEmbeddingInputs,
    RankingInputs,
    RewardPairInputs,
    ScalarTargetInputs,
    UnpairedInputs,
    get_objective,
)

OFFLINE = ["dpo", "cdpo", "rdpo", "ipo", "hinge", "simpo", "orpo", "rpo", "sppo", "kto", "pro", "lipo", "sft"]
MODELS = ["bt_reward", "gpm", "hl_gauss"]


def example(kind: str, with_ref: bool) -> tuple[object, list[torch.Tensor]]:
    """A small batch of the given input kind and the leaf tensors gradients should reach."""
    g = torch.Generator().manual_seed(0)

    def leaf(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g) * scale + shift).requires_grad_(True)

    def const(*shape, scale=1.0, shift=0.0):
        return torch.rand(*shape, generator=g) * scale + shift

    if kind == "pair":
        pc, pr = leaf(4, scale=-5, shift=-1), leaf(4, scale=-5, shift=-1)
        ref = (const(4, scale=-5, shift=-1), const(4, scale=-5, shift=-1)) if with_ref else (None, None)
        lens = torch.tensor([3, 5, 2, 7]), torch.tensor([4, 4, 6, 1])
        return PairInputs(pc, pr, *ref, *lens), [pc, pr]
    if kind == "unpaired":
        p = leaf(4, scale=-5, shift=-1)
        return UnpairedInputs(p, const(4, scale=-5), torch.tensor([1, 0, 1, 0]), None, const(4), const(4)), [p]
    if kind == "ranking":
        p = leaf(2, 3, scale=-5, shift=-1)
        ref = const(2, 3, scale=-5, shift=-1) if with_ref else None
        scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4]])
        return RankingInputs(p, ref, scores, length=torch.tensor([[2, 3, 4], [5, 1, 2]])), [p]
    if kind == "demonstration":
        p = leaf(4, scale=-5, shift=-1)
        return DemonstrationInputs(p, torch.tensor([3, 5, 2, 7]), torch.tensor([1.0, 0.5, 2.0, 1.0])), [p]
    if kind == "reward_pair":
        a, b = leaf(4), leaf(4)
        return RewardPairInputs(a, b), [a, b]
    if kind == "preference_embedding":
        a, b = leaf(4, 6, shift=-0.5), leaf(4, 6, shift=-0.5)
        return PreferenceEmbeddingInputs(a, b), [a, b]
    if kind == "scalar_target":
        logits = leaf(3, 101)
        return ScalarTargetInputs(logits, torch.tensor([0.5, -3.0, 7.0])), [logits]
    raise AssertionError(kind)


def test_every_name_is_registered():
    assert set(OFFLINE + MODELS) <= set(REGISTRY)


@pytest.mark.parametrize("name", OFFLINE + MODELS)
def test_objective_contract(name):
    spec = get_objective(name)
    params = spec.params()  # every hyperparameter has a default
    assert re.search(r"(19|20)\d\d", spec.doc), "the docstring must cite the paper"
    inputs, leaves = example(spec.inputs, with_ref=spec.needs_ref)
    loss, metrics = spec(inputs, params)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for x in leaves:
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert metrics["loss"] == pytest.approx(loss.item())
    for key, value in metrics.items():
        assert isinstance(value, float) or (torch.is_tensor(value) and value.dim() == 0 and not value.requires_grad), (
            key
        )
    if spec.inputs == "pair":
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(metrics)
        assert {"logps/chosen", "logps/rejected"} <= set(metrics)
