"""Helpers shared by the training tests (synthetic records, configs, a rule judge), and their own checks."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from preflab.config import RunConfig, load_config
from preflab.data import PreferencePair
from preflab.feedback import Judge

FAST = [
    "train.bf16=false",
    "train.progress=false",
    "train.warmup_steps=0",
    "train.scheduler=constant",
    "train.max_grad_norm=null",
]


def make_cfg(out: Path, *overrides: str) -> RunConfig:
    """A run config for the tiny model: fp32, no progress bar, constant learning rate, no clipping."""
    return load_config(None, [f"output_dir={out}", *FAST, *overrides])


def synthetic_pairs(n: int, seed: int = 0) -> list[PreferencePair]:
    """Short pairs with a learnable rule: the chosen answer repeats the prompt's word, the rejected does not."""
    words = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "ocean"]
    out = []
    for i in range(n):
        w = words[(i + seed) % len(words)]
        out.append(PreferencePair(f"Say {w}.", f"{w} {w}", f"no{'!' * (i % 3)}"))
    return out


class LengthJudge(Judge):
    """A rule judge: the longer answer wins, P(a ≻ b) = σ((len a − len b) / scale); equal lengths tie."""

    name = "length"

    def __init__(self, scale: float = 2.0):
        self.scale = scale

    def compare(self, prompt, a, b) -> float:
        return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / self.scale))


class CountingJudge(LengthJudge):
    """A :class:`LengthJudge` that counts the pairs it is asked about."""

    def __init__(self, scale: float = 2.0):
        super().__init__(scale)
        self.calls = 0

    def compare_batch(self, prompts, a, b):
        self.calls += len(prompts)
        return super().compare_batch(prompts, a, b)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float().cpu() - b[k].float().cpu()).abs().max().item() for k in a)


def test_length_judge_values():
    judge = LengthJudge(scale=1.0)
    assert judge.compare("q", "abc", "abc") == 0.5
    assert judge.compare("q", "abcd", "ab") == 1 / (1 + math.exp(-2))
    assert judge.compare_batch(["q"], ["a"], ["abc"]) == [1 / (1 + math.exp(2))]


def test_make_cfg_applies_overrides(tmp_path):
    cfg = make_cfg(tmp_path, "train.lr=0.5", "objective.name=ipo")
    assert (cfg.train.lr, cfg.objective.name, cfg.train.bf16, cfg.output_dir) == (0.5, "ipo", False, str(tmp_path))
