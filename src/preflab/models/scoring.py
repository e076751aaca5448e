"""``log π(y | x)`` of given (prompt, completion) token lists: the one scorer outside a training batch.

Evaluation (KL estimates, ranking accuracy) and generation (log-probs of sampled completions) score token lists
rather than a :class:`~preflab.data.collate.ExampleBatch`; :func:`score_completions` collates them and runs
:class:`~preflab.models.logprobs.SequenceScorer`, the module training scores with, so the three callers share one
implementation (gather the target logit, subtract a chunked logsumexp; the chunked lm-head where the model allows
it). On CPU with ``sdpa`` attention the rows are collated ``prefix_shared`` (one completion each), which the scorer
packs: no padding, and the prompt start the rows share (a chat template's system turn) computed once per batch;
elsewhere (GPU kernels, other attention implementations) padded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def score_completions(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    batch_size: int = 8,
    bf16: bool = False,
    per_token: bool = False,
    chunked_head: bool | str = "auto",
) -> np.ndarray | list[list[float]]:
    """Summed completion log-probs, one float64 per (prompt, completion); with ``per_token`` each completion's
    token log-probs instead (lists of floats).

    No gradient; ``bf16`` runs the forwards under bf16 autocast where supported. Sequences are scored
    ``batch_size`` at a time, longest first (less padding); results come back in the input order. An empty
    completion scores 0 (no tokens). Every prompt needs at least one token.
    """
    import torch

    from ..data.collate import collate_sequences
    from ..generation.sampler import bf16_autocast_ok
    from .logprobs import SequenceScorer

    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts for {len(completion_ids)} completions")
    sums = np.zeros(len(prompt_ids), dtype=np.float64)
    tokens: list[list[float]] = [[] for _ in prompt_ids]
    scorer = SequenceScorer(model, chunked_head=chunked_head)
    layout = "prefix_shared" if packs_rows(model) else "padded"
    pad_id = getattr(model.config, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    todo = [i for i, c in enumerate(completion_ids) if len(c)]
    todo.sort(key=lambda i: (-(len(prompt_ids[i]) + len(completion_ids[i])), i))
    step = max(1, int(batch_size))
    # one autocast region for every batch: autocast casts each weight once (its cache lives as long as the region)
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16_autocast_ok(model, bf16))
    with torch.no_grad(), autocast:
        for start in range(0, len(todo), step):
            idx = todo[start : start + step]
            groups = [(list(prompt_ids[i]), [list(completion_ids[i])]) for i in idx]
            batch = collate_sequences(groups, layout, pad_id).to(model.device)
            if per_token:
                flat = scorer(batch, per_token=True)[0].double().cpu()
                for seq, part in zip(idx, flat.split(batch.completion_lengths.tolist()), strict=True):
                    tokens[seq] = part.tolist()
            else:
                sums[idx] = scorer(batch).double().cpu().numpy()
    return tokens if per_token else sums


def packs_rows(model) -> bool:
    """Whether :class:`~preflab.models.logprobs.SequenceScorer` packs ``model``'s prefix-shared rows: a CPU model
    with ``sdpa`` attention (:mod:`preflab.models.attention`)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"
    return impl == "sdpa" and next(model.parameters()).device.type == "cpu"
