"""Summed completion log-probs of already-generated, padded sequences (as ``generate`` returns them).

A thin adapter over :func:`preflab.models.scoring.score_completions`, the one scorer (no full-vocabulary
log-softmax): it strips the padding and scores the (prompt, completion) token lists.
"""

from __future__ import annotations


def completion_logprobs(
    model, sequences, prompt_mask, completion_mask, rows_per_chunk: int = 4, bf16: bool | None = True
):
    """Σ over completion tokens of log π(token | prefix), one value per row (a float32 tensor).

    ``sequences`` = left-padded prompt ids followed by generated ids (as ``generate`` returns them);
    ``prompt_mask`` (B, P) is the prompt's attention mask; ``completion_mask`` (B, T) marks the real
    completion tokens (1 up to and including EOS). Positions count the real tokens, as in ``generate``, so the
    scores match what was sampled from (up to bf16 rounding; ``bf16`` follows :func:`.precision.bf16_autocast_ok`:
    True = under bf16 autocast where supported, None = on GPUs only, False = in the model's dtype).
    """
    import torch

    from ..models.scoring import score_completions
    from .sampler import bf16_autocast_ok

    prompt_len = prompt_mask.shape[1]
    seqs = sequences.cpu()
    pmask, cmask = prompt_mask.bool().cpu(), completion_mask.bool().cpu()
    prompts = [seqs[r, :prompt_len][pmask[r]].tolist() for r in range(seqs.shape[0])]
    completions = [seqs[r, prompt_len:][cmask[r]].tolist() for r in range(seqs.shape[0])]
    sums = score_completions(model, prompts, completions, batch_size=rows_per_chunk, bf16=bf16_autocast_ok(model, bf16))
    return torch.tensor(sums, dtype=torch.float32, device=sequences.device)
