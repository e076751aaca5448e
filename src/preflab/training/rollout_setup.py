"""The run's rollout schedule from its config: sampling from the policy being trained, scoring it in eval mode,
per-token reference log-probs, the gold reward beside the proxy one (:func:`make_rollout_schedule`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..data.collate import ExampleBatch
from ..data.tokenize import Tokenizer
from .rollout_batches import reference_token_logprobs
from .rollouts import RolloutSchedule


def make_rollout_schedule(
    cfg: Any,
    acc: Any,
    scorer: Any,
    reference: Callable[[], Any],
    tok: Any,
    tk: Tokenizer,
    judge: Any,
    prompts: list[Any],
    algorithm: str,
    params: Any,
    from_config: bool = False,
) -> RolloutSchedule:
    """The run's :class:`RolloutSchedule`: sampling from the prepared ``scorer``'s model (``online:``), scoring
    with it in eval mode, per-token reference log-probs from ``reference()`` (built after the schedule). The gold
    reward is logged beside the proxy one when the judge is the gold one, or (``from_config``) when the prompts are
    the task suite's."""
    from ..generation.sampler import SamplingParams, decodes_own_weights, pick_engine, sample
    from .samplers import eval_mode
    from .schedule import gather_objects

    online, r = cfg.online, cfg.rollout
    bf16 = acc.mixed_precision == "bf16"

    def model_of() -> Any:
        return acc.unwrap_model(scorer)

    def draw(batch_prompts: list[Any], seed: int, n: int, greedy: bool = False) -> list[list[Any]]:
        model = model_of().model
        with eval_mode(model):
            # log π_old from the decoding pass where it is the model's own (the rollout skips scoring the policy)
            own = not greedy and pick_engine(model) == "rollout" and decodes_own_weights(model, bf16)
            sp = SamplingParams(
                max_new_tokens=online.max_new_tokens,
                temperature=0.0 if greedy else online.temperature,
                top_p=online.top_p,
                seed=seed,
                n=n,
                bf16=bf16,
                batch_size=max(32, n * len(batch_prompts)),
                return_token_logprobs=own,
            )
            return sample(model, tok, batch_prompts, sp)

    def score(batch: ExampleBatch) -> tuple[Tensor, Tensor | None]:
        unwrapped = model_of()
        with eval_mode(unwrapped), torch.no_grad(), acc.autocast():
            tok_lp, values = unwrapped(batch.to(acc.device).sequences, per_token=True)
            if values is not None:
                values = unwrapped.value_head.decode(values.float())
            return tok_lp.float(), values

    from ..feedback.judges.gold import GoldJudge

    gold = None
    if r.gold and isinstance(judge, GoldJudge):
        gold = judge
    elif r.gold and from_config:  # the proxy judge scores the suite's prompts: their gold scorers are known
        from ..feedback import make_judge
        from ..feedback.tasks import get_suite

        tasks = get_suite(online.tasks).tasks(online.num_prompts, seed=cfg.seed)
        if {repr(t.prompt) for t in tasks} >= {repr(p) for p in prompts}:
            gold = make_judge("gold", tasks=tasks)
    return RolloutSchedule(
        prompts,
        draw,
        judge,
        tk,
        cfg.train.batch_size,
        algorithm=algorithm,
        params=params,
        score_fn=score,
        ref_fn=lambda batch: reference_token_logprobs(reference(), batch.to(acc.device)),
        group_size=r.group_size,
        prompts_per_rollout=r.prompts_per_rollout,
        epochs=r.epochs,
        grad_accum=cfg.train.grad_accum,
        reward=r.reward,
        reward_norm=r.reward_norm,
        truncated=r.truncated,
        truncated_penalty=r.truncated_penalty,
        gold=gold,
        value_head=getattr(model_of(), "value_head", None),
        seed=cfg.seed,
        layout=cfg.train.layout,
        world_size=acc.num_processes,
        rank=acc.process_index,
        gather=gather_objects(acc),
    )
