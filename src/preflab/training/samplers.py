"""The samplers of the online, iterative and self-play schedules: completions of the current policy (eval mode,
no grad), or of the geometric mixture of the policy and the reference (Nash-MD, XPO's exploration)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import ConfigError
from ..models.policy import AdapterDisabledReference, FrozenCopyReference, Reference


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """The model in eval mode inside the block (no dropout while sampling), its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _params(cfg: Any, acc: Any, seed: int, n: int) -> Any:
    """The run's ``online:`` sampling settings for one call: ``n`` samples per prompt, bf16 when training is."""
    from ..generation.sampler import SamplingParams

    online = cfg.online
    return SamplingParams(
        max_new_tokens=online.max_new_tokens,
        temperature=online.temperature,
        top_p=online.top_p,
        seed=seed,
        n=n,
        bf16=acc.mixed_precision == "bf16",
    )


def mixture_sampler(
    cfg: Any, acc: Any, scorer: Any, tok: Any, holder: dict[str, Reference], mix: float
) -> Callable[[list[Any], int], list[Any]]:
    """One completion per prompt from the per-token geometric mixture π^{1−m} π_ref^{m} of the policy now and
    the run's π_ref (:mod:`preflab.generation.mixture`): Nash-MD's opponents, and with m = 1 XPO's π_ref
    samples. π_ref is the LoRA policy with its adapters off, or the frozen copy."""
    from ..generation.mixture import sample_mixture

    def draw(prompts: list[Any], seed: int) -> list[Any]:
        model = acc.unwrap_model(scorer).model
        ref = holder["ref"]
        if isinstance(ref, AdapterDisabledReference):
            reference, context = model, model.disable_adapter
        elif isinstance(ref, FrozenCopyReference):
            reference, context = ref.scorer.model, None
        else:  # pragma: no cover - the table gives these algorithms a reference
            raise ConfigError(
                "sampling from π_ref needs reference.mode adapters_disabled or frozen_copy", field="reference.mode"
            )
        with eval_mode(model):
            params = _params(cfg, acc, seed, 1)
            return [
                c[0]
                for c in sample_mixture(
                    model, tok, prompts, params, mix=mix, reference=reference, reference_context=context
                )
            ]

    return draw


def policy_sampler(cfg: Any, acc: Any, scorer: Any, tok: Any) -> Callable[..., list[list[Any]]]:
    """``n`` (default two) completions per prompt from the current policy (eval mode, no grad) for the online
    and iterative schedules."""
    from ..generation.sampler import sample

    def draw(prompts: list[Any], seed: int, n: int = 2) -> list[list[Any]]:
        model = acc.unwrap_model(scorer).model
        with eval_mode(model):
            return sample(model, tok, prompts, _params(cfg, acc, seed, n))

    return draw
