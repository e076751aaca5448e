"""The rollout engine's KV state: the slot cache its decoding steps write, a prompt's prefill waiting for its rows,
and the store that keeps prefills from one :func:`~preflab.generation.engine.rollout` call for the next."""

from __future__ import annotations

from dataclasses import dataclass, replace


class SlotCache:
    """Per-layer K/V buffers ``[slots, kv_heads, capacity, head_dim]`` in the dtype the model computes them in (bf16
    keys and values take half the memory of float32 ones, and decoding attention multiplies them in bf16). Before
    each decoding forward the engine sets ``write_cols`` (each row's next column) and ``width`` (columns the
    attention reads); ``update`` writes the step's keys/values in place and returns the first ``rows`` rows, up to
    ``width`` or whole (see there)."""

    is_compileable = False

    def __init__(self, slots: int, capacity: int) -> None:
        self.slots, self.capacity = slots, capacity
        self.keys: list = []
        self.values: list = []
        self.write_cols = None
        self.width = 0

    def allocate_like(self, layer_keys: list, layer_values: list) -> None:
        import torch

        for k, v in zip(layer_keys, layer_values, strict=True):
            self.keys.append(
                torch.zeros((self.slots, k.shape[1], self.capacity, k.shape[3]), dtype=k.dtype, device=k.device)
            )
            self.values.append(
                torch.zeros((self.slots, v.shape[1], self.capacity, v.shape[3]), dtype=v.dtype, device=v.device)
            )

    def insert(self, rows, layer_keys: list, layer_values: list, src_row: int) -> None:
        """Rows ``rows`` (an index tensor) get source row ``src_row``'s columns ``0 .. L-1`` (a prefill's KV)."""
        for buf_k, buf_v, k, v in zip(self.keys, self.values, layer_keys, layer_values, strict=True):
            width = k.shape[2]
            buf_k[rows, :, :width] = k[src_row].to(buf_k.dtype)
            buf_v[rows, :, :width] = v[src_row].to(buf_v.dtype)

    def keep(self, index, width: int) -> None:
        """Compact: rows ``index`` (ascending) move to the front, in order."""
        n = index.numel()
        for buf in (*self.keys, *self.values):
            buf[:n, :, :width] = buf[index, :, :width]

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        import torch

        rows = torch.arange(key_states.shape[0], device=key_states.device)
        k, v = self.keys[layer_idx], self.values[layer_idx]
        k[rows, :, self.write_cols] = key_states[:, :, 0].to(k.dtype)
        v[rows, :, self.write_cols] = value_states[:, :, 0].to(v.dtype)
        n = key_states.shape[0]
        # whole rows when the width is at least half the capacity (views a matmul reads without a copy; decoding
        # attention reads the first ``width`` columns, the mask's), else the first ``width`` columns
        if 2 * self.width >= self.capacity:
            return k[:n], v[:n]
        return k[:n, :, : self.width], v[:n, :, : self.width]

    # what a model's forward may ask of a cache before attention runs
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.width

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class _Prefilled:
    prompt: int
    remaining: int
    next_sample: int
    src_row: int
    keys: list
    values: list
    logits: object  # [vocab] first-token logits
    start: int  # first real column
    width: int  # prefill columns


class PrefillStore:
    """Prefills kept from one :func:`~preflab.generation.engine.rollout` call for the next on the same model: a
    prompt sampled again (the evaluation's greedy answers, then its KL samples from the same policy) takes its keys,
    values and first-token logits from the earlier call instead of another forward. The entries are the earlier
    prefill batches' own tensors (padding and all), so a reused prompt decodes exactly as if it had been prefilled
    again in the same batch. Keyed by the prompt's token ids and the weights' dtype; the tensors live until the
    store is dropped."""

    def __init__(self) -> None:
        self._entries: dict = {}

    def take(self, dtype, prompt_ids: list[int], prompt: int, samples: int) -> _Prefilled | None:
        """The stored prefill of these prompt ids, as prompt ``prompt`` of a call with ``samples`` samples each."""
        hit = self._entries.get((dtype, tuple(prompt_ids)))
        return None if hit is None else replace(hit, prompt=prompt, remaining=samples, next_sample=0)

    def put(self, dtype, prompt_ids: list[int], entry: _Prefilled) -> None:
        self._entries[(dtype, tuple(prompt_ids))] = entry  # take() copies it: the rollout's counters stay its own

    def __len__(self) -> int:
        return len(self._entries)
