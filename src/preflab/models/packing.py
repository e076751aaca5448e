"""Packing a prefix-shared scoring batch for the decoder: real tokens only, shared prompt starts once.

A ``prefix_shared`` batch (:func:`preflab.data.collate.collate_prefix_shared`) has one row per group,
``[prompt, c_1, …, c_K]``, padded to the longest row, with an ``(R, 1, T, T)`` boolean mask. :class:`RowPacking`
hands the decoder one row of the N tokens it must compute and gives attention (:func:`preflab.models.attention.
scoring_sdpa`) the rows back, per layer; :class:`Segments` splits that attention into prompt and completion blocks
where that has fewer scores.

Rows whose prompts begin with the same tokens at the same positions, each attending causally to the ones before it
(a chat template's system turn: SmolLM2's default is 24 of a quickstart prompt's ~49 tokens), have the same hidden
states there in every row. :func:`shared_prefix` finds that run and the packing computes it once, as row 0's
tokens: every row's attention reads those keys and values, and their gradients sum the rows' contributions
(an ``index_select``, whose backward adds). Each packed token's output is read from exactly one slot (its *owner*:
row 0's, for a shared token), so a shared token's query gets its gradient once. The log-probs and gradients equal
the unshared packing's up to the order of float sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

# each completion's block of :class:`Segments` holds its prompt's keys: at most this many times the rows' keys
KEY_COPIES = 2


def shared_prefix(mask: Tensor, input_ids: Tensor, position_ids: Tensor | None) -> int:
    """How many leading slots every row of a prefix-shared batch computes identically: the same token at the same
    position, attending to exactly the slots before it and itself (0 for a single row)."""
    rows, _, width, _ = mask.shape
    if rows < 2 or input_ids.shape != (rows, width):
        return 0
    same = (input_ids == input_ids[:1]).all(0)
    if position_ids is not None:
        same &= (position_ids == torch.arange(width, device=position_ids.device)).all(0)
    length = int(same.int().cumprod(0).sum())
    if length == 0:
        return 0
    causal = torch.zeros(length, width, dtype=torch.bool, device=mask.device)
    causal[:, :length] = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    exact = (mask[:, 0, :length, :] == causal).all(-1).all(0)  # slot t of every row sees exactly 0..t
    return int(exact.int().cumprod(0).sum())


@dataclass
class RowPacking:
    """A prefix-shared batch's real tokens packed into one row of N, and the (R, T) rows their attention runs on.

    The decoder's matmuls and elementwise work then skip the padding of the rows (every row is as wide as the
    longest), while attention still runs row by row with the batch's (R, 1, T, T) mask: :func:`scoring_sdpa`
    gathers each layer's q, k, v into the rows (a zero token in every padding slot, which sees only itself) and
    scatters the output back.
    """

    slots: Tensor  # (R, T): the packed index of each row slot, N for padding
    tokens: Tensor  # (N,): the flat (R·T) slot of each packed token's owner, in order
    mask: Tensor  # (R, 1, T, T) bool, True = attend
    segments: Segments | None = None  # the same attention as prompt and completion blocks, where that is smaller
    checked: tuple[Tensor, bool] | None = None  # the last layer mask compared with ``mask`` (_row_mask_is)
    shared: int = 0  # leading slots computed once for every row (:func:`shared_prefix`)
    owned: Tensor | None = None  # (R, T): ``slots`` with N in the slots that only read a shared token (not owners)

    @classmethod
    def of(cls, mask: Tensor, input_ids: Tensor | None = None, position_ids: Tensor | None = None) -> RowPacking:
        """From a prefix-shared mask: a slot is real when it sees its row's first token (padding sees only itself).
        With the batch's ``input_ids`` (and ``position_ids``), the rows' :func:`shared_prefix` is packed once."""
        rows, _, width, _ = mask.shape
        real = mask[:, 0, :, 0].clone()
        real[:, 0] = True
        shared = 0 if input_ids is None else shared_prefix(mask, input_ids, position_ids)
        real[1:, :shared] = False  # row 0 owns the shared slots
        tokens = real.reshape(-1).nonzero().squeeze(-1)
        n = tokens.numel()
        slots = torch.full((rows * width,), n, dtype=torch.long, device=mask.device)
        slots[tokens] = torch.arange(n, device=mask.device)
        owned = slots.view(rows, width)
        slots = owned.clone()
        slots[1:, :shared] = owned[0, :shared]
        return cls(
            slots=slots,
            tokens=tokens,
            mask=mask,
            segments=Segments.of(mask, slots, n, owned),
            shared=shared,
            owned=owned,
        )

    def to_rows(self, x: Tensor) -> Tensor:
        """(1, H, N, D) packed → (R, H, T, D) rows, zeros in the padding slots."""
        _, heads, n, dim = x.shape
        rows, width = self.slots.shape
        flat = x.transpose(1, 2).reshape(n, heads * dim)
        if self.shared:  # a shared token fills a slot of every row: its gradient is their sum
            out = torch.cat([flat, flat.new_zeros(1, heads * dim)]).index_select(0, self.slots.reshape(-1))
        else:
            out = _RowGather.apply(flat, self.slots.reshape(-1), self.tokens)
        return out.view(rows, width, heads, dim).transpose(1, 2)

    def to_packed(self, x: Tensor) -> Tensor:
        """(R, H, T, D) rows → (1, N, H, D), the layout attention functions return: each token from its owner."""
        rows, heads, width, dim = x.shape
        flat = x.transpose(1, 2).reshape(rows * width, heads * dim)
        give = (self.slots if self.owned is None else self.owned).reshape(-1)
        return _RowGather.apply(flat, self.tokens, give).view(1, -1, heads, dim)


@dataclass
class Segments:
    """A prefix-shared batch's attention split into its blocks: each row's prompt attends causally to itself
    (R blocks of the longest prompt, P), each completion to its row's whole prompt and causally to itself (S
    blocks of the longest completion, C, over P + C keys). A row ``[prompt, c_1, …, c_K]`` of width T costs
    R·T² scores; its blocks R·P² + S·C·(P + C): a GRPO rollout row (a 50-token prompt, G = 8 completions of
    ~50 tokens) needs 5× fewer. The softmax of every query runs over exactly the keys its row mask shows it, so
    the outputs equal the rows' up to the order of float sums.

    Index tensors point into the packed (N) token axis; N is a zero token (padding, which sees only itself)."""

    prompt_index: Tensor  # (R, P) packed index of each prompt token, N for padding
    prompt_mask: Tensor  # (R, 1, P, P) bool
    query_index: Tensor  # (S, C) packed index of each completion token, N for padding
    key_index: Tensor  # (S, P + C) its prompt's tokens, then its own
    completion_mask: Tensor  # (S, 1, C, P + C) bool
    back: Tensor  # (N,) where each packed token's output sits in [prompt blocks; completion blocks] flattened
    slot_token: Tensor  # (R·P + S·C,) the packed token each block slot owns, N for padding and shared copies

    @classmethod
    def of(cls, mask: Tensor, slots: Tensor, n: int, owned: Tensor | None = None) -> Segments | None:
        """The blocks of a prefix-shared ``(R, 1, T, T)`` mask whose real tokens are ``slots`` (``RowPacking``;
        ``owned`` marks which slot of a shared token is read back, default every slot);
        None when the mask is not exactly one causal prompt and causal completions that each see that prompt,
        when the blocks would not have fewer scores than the rows, or when their keys (each completion's block
        holds a copy of its prompt's, saved for backward) would be more than :data:`KEY_COPIES` times the rows'."""
        rows, _, width, _ = mask.shape
        dev = mask.device
        owned = slots if owned is None else owned
        prompts: list[list[int]] = []
        owners: list[list[int]] = []  # each prompt's slots as read back (``owned``)
        comps: list[tuple[int, list[int]]] = []
        comp_owners: list[list[int]] = []  # (a shared run may reach into a row's first completion)
        for r in range(rows):
            m = mask[r, 0]
            real = int((slots[r] < n).sum())
            if not bool((slots[r, :real] < n).all()):
                return None  # real tokens must come first
            sub = m[:real, :real]
            below = torch.ones(real, real, dtype=torch.bool, device=dev).tril()
            seen_by_all = (sub | ~below).all(0)  # column t: every later token sees it
            p = real if bool(seen_by_all.all()) else int((~seen_by_all).int().argmax())
            follows = sub.diagonal(-1).tolist()  # follows[t - 1]: token t sees token t - 1
            starts = [t for t in range(p, real) if t == p or not follows[t - 1]]
            ends = [*starts[1:], real] if starts else []
            expected = below.clone()
            expected[p:, p:] = False
            for a, b in zip(starts, ends, strict=True):
                expected[a:b, a:b] = below[: b - a, : b - a]
            if not torch.equal(sub, expected):
                return None
            prompts.append(slots[r, :p].tolist())
            owners.append(owned[r, :p].tolist())
            comps += [(r, slots[r, a:b].tolist()) for a, b in zip(starts, ends, strict=True)]
            comp_owners += [owned[r, a:b].tolist() for a, b in zip(starts, ends, strict=True)]
        p_len = max(len(x) for x in prompts)
        c_len = max((len(c) for _, c in comps), default=0)
        if not comps or rows * p_len * p_len + len(comps) * c_len * (p_len + c_len) >= rows * width * width:
            return None
        if rows * p_len + len(comps) * (p_len + c_len) > KEY_COPIES * rows * width:
            return None  # each completion's block holds its prompt's keys: a long prompt, many completions

        def padded(lists: list[list[int]], length: int) -> Tensor:
            out = torch.full((len(lists), length), n, dtype=torch.long)
            for i, x in enumerate(lists):
                out[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            return out.to(dev)

        prompt_index = padded(prompts, p_len)
        query_index = padded([c for _, c in comps], c_len)
        owner = torch.tensor([r for r, _ in comps], dtype=torch.long, device=dev)
        key_index = torch.cat([prompt_index[owner], query_index], 1)
        pos_p = torch.arange(p_len, device=dev)
        pos_c = torch.arange(c_len, device=dev)
        p_real = prompt_index < n
        c_real = query_index < n
        eye_p = pos_p[:, None] == pos_p[None, :]
        prompt_mask = (pos_p[None, None, :] <= pos_p[None, :, None]) & p_real[:, None, :] & p_real[:, :, None]
        prompt_mask = prompt_mask | eye_p  # a padding query sees its own (zero) key: no all-masked row
        sees_prompt = p_real[owner][:, None, :] & c_real[:, :, None]  # (S, C, P)
        causal = (pos_c[None, None, :] <= pos_c[None, :, None]) & c_real[:, None, :] & c_real[:, :, None]
        own = causal | (pos_c[:, None] == pos_c[None, :])
        completion_mask = torch.cat([sees_prompt, own], 2)
        slot_token = torch.cat([padded(owners, p_len).reshape(-1), padded(comp_owners, c_len).reshape(-1)])
        back = torch.full((n + 1,), -1, dtype=torch.long, device=dev)
        back[slot_token] = torch.arange(slot_token.numel(), device=dev)
        if bool((back[:n] < 0).any()):
            return None  # a real token in no block: not the structure verified above
        return cls(
            prompt_index=prompt_index,
            prompt_mask=prompt_mask.unsqueeze(1),
            query_index=query_index,
            key_index=key_index,
            completion_mask=completion_mask.unsqueeze(1),
            back=back[:n],
            slot_token=slot_token,
        )

    def attend(self, query: Tensor, key: Tensor, value: Tensor, groups: int, scale: float) -> Tensor:
        """(1, H|Hkv, N, D) packed q, k, v → (1, N, H, D) attention output, block by block."""
        from transformers.integrations.sdpa_attention import repeat_kv

        from .attention import FlashAttention

        def flat(x: Tensor) -> Tensor:  # (1, H, N, D) -> (N + 1, H·D), a zero token last
            _, heads, n, dim = x.shape
            f = x.transpose(1, 2).reshape(n, heads * dim)
            return torch.cat([f, f.new_zeros(1, heads * dim)])

        def blocks(f: Tensor, index: Tensor, heads: int) -> Tensor:  # -> (B, heads, L, D)
            b, length = index.shape
            return f.index_select(0, index.reshape(-1)).view(b, length, heads, -1).transpose(1, 2)

        hq, hkv = query.shape[1], key.shape[1]
        q, k, v = flat(query), flat(key), flat(value)
        outs = []
        for q_index, k_index, mask in (
            (self.prompt_index, self.prompt_index, self.prompt_mask),
            (self.query_index, self.key_index, self.completion_mask),
        ):
            kb, vb = blocks(k, k_index, hkv), blocks(v, k_index, hkv)
            if groups > 1:
                kb, vb = repeat_kv(kb, groups), repeat_kv(vb, groups)
            out = FlashAttention.apply(blocks(q, q_index, hq), kb, vb, mask, scale, False)
            outs.append(out.transpose(1, 2).reshape(-1, out.shape[1] * out.shape[3]))
        slots = torch.cat(outs)
        # each packed token's output sits in exactly one slot; padding slots (index N) get no gradient
        packed = _RowGather.apply(slots, self.back, self.slot_token)
        return packed.view(1, -1, hq, query.shape[-1])


class _RowGather(torch.autograd.Function):
    """``[x; 0][take]`` with the backward ``[g; 0][give]``: a gather both ways, for index maps where every row of
    ``x`` lands in exactly one output row, at ``give`` (no scatter-add: indexing's backward is an index_put)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, take: Tensor, give: Tensor) -> Tensor:
        ctx.save_for_backward(give)
        return torch.cat([x, x.new_zeros(1, x.shape[1])]).index_select(0, take)

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        (give,) = ctx.saved_tensors
        return torch.cat([grad, grad.new_zeros(1, grad.shape[1])]).index_select(0, give), None, None
