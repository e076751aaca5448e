"""The three batch layouts, checked token by token on hand-built examples."""

from __future__ import annotations

import pytest
import torch

from preflab.data.collate import (
    attach_kl_partners,
    collate_examples,
    collate_packed,
    collate_padded,
    collate_prefix_shared,
)
from preflab.data.tokenize import TokenizedExample
from preflab.errors import DataError

PAD = 0
# two groups: prompt [1, 2] with completions [3] / [4, 5]; prompt [6] with [7, 8] / [9]
GROUPS = [([1, 2], [[3], [4, 5]]), ([6], [[7, 8], [9]])]


def test_padded_layout():
    b = collate_padded(GROUPS, PAD)
    # rows = sequences k*G + g: (g0,c0), (g1,c0), (g0,c1), (g1,c1)
    assert b.input_ids.tolist() == [[1, 2, 3, 0], [6, 7, 8, 0], [1, 2, 4, 5], [6, 9, 0, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
    assert b.target_ids.tolist() == [3, 7, 8, 4, 5, 9]
    # token 3 is predicted at row 0 position 1 (flat 1); 7 at row 1 pos 0 (flat 4), 8 at flat 5; ...
    assert b.logit_index.tolist() == [1, 4, 5, 9, 10, 12]
    assert b.sequence_index.tolist() == [0, 1, 1, 2, 2, 3]
    assert b.completion_lengths.tolist() == [1, 2, 2, 1]
    assert (b.num_sequences, b.num_tokens) == (4, 12)


def test_packed_layout_is_padding_free():
    b = collate_packed(GROUPS, PAD)
    assert b.input_ids.tolist() == [[1, 2, 3, 6, 7, 8, 1, 2, 4, 5, 6, 9]]
    assert b.position_ids.tolist() == [[0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 0, 1]]
    assert b.attention_mask is None
    assert b.logit_index.tolist() == [1, 3, 4, 7, 8, 10]
    assert b.target_ids.tolist() == [3, 7, 8, 4, 5, 9]
    assert b.num_tokens == 12
    padded = collate_packed(GROUPS, PAD, pad_to_multiple_of=8)
    assert padded.input_ids.shape == (1, 16) and padded.num_tokens == 12
    assert padded.position_ids[0, 12:].tolist() == [0, 1, 2, 3]  # padding is its own sequence


def test_prefix_shared_layout_encodes_each_prompt_once():
    b = collate_prefix_shared(GROUPS, PAD)
    assert b.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 0]]
    # completions continue the prompt's positions; the second completion restarts after the prompt
    assert b.position_ids.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 1, 0]]
    # the first token of every completion is predicted by the last prompt token
    assert b.logit_index.tolist() == [1, 5, 6, 1, 3, 5]
    assert b.target_ids.tolist() == [3, 7, 8, 4, 5, 9]
    assert b.sequence_index.tolist() == [0, 1, 1, 2, 2, 3]
    mask = b.attention_mask[:, 0].int()
    assert mask[0].tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],  # completion 0 sees the prompt and itself
        [1, 1, 0, 1, 0],  # completion 1 does not see completion 0
        [1, 1, 0, 1, 1],
    ]
    assert mask[1, 4].tolist() == [0, 0, 0, 0, 1]  # a padding query sees only itself (no NaN rows)
    assert b.num_tokens == 9


def test_rejects_inconsistent_groups():
    with pytest.raises(ValueError, match="same number"):
        collate_padded([([1], [[2], [3]]), ([1], [[2]])], PAD)
    with pytest.raises(ValueError, match="at least one token"):
        collate_padded([([1], [[]])], PAD)
    with pytest.raises(ValueError, match="unknown"):
        collate_examples([], "listwise", "padded", PAD)


def _ex(i, prompt, comps, **kw):
    return TokenizedExample(i, prompt, tuple(comps), **kw)


def test_pair_batch_fields():
    exs = [_ex(5, [1], [[2], [3]], prob=0.7, weight=2.0), _ex(9, [4], [[5], [6]])]
    b = collate_examples(exs, "pair", "padded", PAD)
    assert b.index.tolist() == [5, 9]
    assert b.weight.tolist() == [2.0, 1.0]
    assert b.prob.tolist() == pytest.approx([0.7, 1.0])  # a hard label inside a soft batch is p = 1
    assert collate_examples([exs[1]], "pair", "padded", PAD).prob is None


def test_kl_partners_are_the_next_rows_completion():
    exs = [_ex(i, [10 + i], [[20 + i]], label=float(i % 2)) for i in range(3)]
    paired = attach_kl_partners(exs)
    assert [ex.completions for ex in paired] == [([20], [21]), ([21], [22]), ([22], [20])]
    b = collate_examples(paired, "unpaired", "packed", PAD)
    assert b.with_kl and b.label.tolist() == [0.0, 1.0, 0.0]
    assert b.sequences.target_ids.tolist() == [20, 21, 22, 21, 22, 20]
    assert not collate_examples(exs, "unpaired", "padded", PAD).with_kl
    with pytest.raises(DataError, match="at least two"):
        attach_kl_partners(exs[:1])


def test_batch_moves_to_device():
    b = collate_examples([_ex(0, [1], [[2], [3]])], "pair", "padded", PAD).to("cpu")
    assert isinstance(b.sequences.input_ids, torch.Tensor) and b.sequences.input_ids.device.type == "cpu"
