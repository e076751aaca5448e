"""Summed completion log-probs of already-generated sequences, without a full-vocabulary log-softmax.

``log π(y_t | ·) = z_{y_t} − logsumexp(z)``: gather the target logit, subtract a float32 logsumexp,
a few rows at a time so that at most ``rows × length × vocab`` logits exist at once.
"""

from __future__ import annotations


def completion_logprobs(
    model, sequences, prompt_mask, completion_mask, rows_per_chunk: int = 4, bf16: bool | None = True
):
    """Σ over completion tokens of log π(token | prefix), one value per row.

    ``sequences`` = left-padded prompt ids followed by generated ids (as ``generate`` returns them);
    ``prompt_mask`` (B, P) is the prompt's attention mask; ``completion_mask`` (B, T) marks the real
    completion tokens (1 up to and including EOS). Position ids follow the attention mask, as in
    ``generate``, so the scores match what was sampled from (up to bf16 rounding; ``bf16=False``
    computes in the model's dtype).
    """
    import torch

    from .sampler import bf16_autocast_ok

    attn = torch.cat([prompt_mask, completion_mask], dim=1)
    prompt_len = prompt_mask.shape[1]
    totals = []
    for s in range(0, sequences.shape[0], rows_per_chunk):
        ids = sequences[s : s + rows_per_chunk]
        mask = attn[s : s + rows_per_chunk]
        pos = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with (
            torch.no_grad(),
            torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16_autocast_ok(model, bf16)),
        ):
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        # logits at position t predict token t+1: completion tokens are predicted from P-1 .. L-2
        pred = logits[:, prompt_len - 1 : -1].float()
        target = ids[:, prompt_len:]
        token_lp = pred.gather(-1, target.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(pred, dim=-1)
        totals.append((token_lp * completion_mask[s : s + rows_per_chunk]).sum(dim=1))
    return torch.cat(totals)
