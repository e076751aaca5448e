"""Chat-template rendering, prompt/completion split, EOS, and the truncation policies with their counts."""

from __future__ import annotations

import pytest

from preflab.data import PreferencePair, Ranking, Unpaired
from preflab.data.tokenize import TokenizeOptions, Tokenizer, tokenize_records
from preflab.errors import DataError
from preflab.models import tiny_tokenizer


def ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_chat_template_split_and_single_eos(tiny):
    _, tok = tiny
    tk = Tokenizer(tok)
    ex = tk.example(PreferencePair("Hi?", "Yes", "No"), row=0)
    assert tok.decode(ex.prompt_ids) == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    # the template's "<|im_end|>\n": the end-of-turn token is EOS; the newline after it is dropped
    assert ex.completions[0] == ids(tok, "Yes") + [tok.eos_token_id]
    assert ex.completions[1] == ids(tok, "No") + [tok.eos_token_id]
    assert (ex.prob, ex.weight, ex.label) == (None, 1.0, None)


def test_conversational_prompt_and_completion_messages(tiny):
    _, tok = tiny
    tk = Tokenizer(tok)
    prompt = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    ex = tk.example(Unpaired(prompt, [{"role": "assistant", "content": "A"}], label=False), row=3)
    assert tok.decode(ex.prompt_ids) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    )
    assert ex.completions == (ids(tok, "A") + [tok.eos_token_id],)
    assert (ex.index, ex.label) == (3, 0.0)


def test_plain_text_without_template_appends_eos(tiny):
    _, tok = tiny
    tk = Tokenizer(tok, TokenizeOptions(chat_template=False))
    ex = tk.example(PreferencePair("Q:", " a", " b"), row=0)
    assert ex.prompt_ids == ids(tok, "Q:")  # this tokenizer adds no BOS
    assert ex.completions == (ids(tok, " a") + [tok.eos_token_id], ids(tok, " b") + [tok.eos_token_id])


def test_conversation_without_template_is_a_data_error(tiny):
    _, tok = tiny
    tk = Tokenizer(tok, TokenizeOptions(chat_template=False))
    convo = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(DataError, match="row 7"):
        tk.example(PreferencePair(convo, "x", "y"), row=7)


def _long_pair(p_len: int, c_len: int, r_len: int) -> PreferencePair:
    return PreferencePair("p" * p_len, "c" * c_len, "r" * r_len)


def test_keep_end_cuts_prompt_from_the_left_then_completion_tail(tiny):
    _, tok = tiny
    base = Tokenizer(tok).example(_long_pair(10, 5, 3), 0)
    n_prompt = len(base.prompt_ids)  # 10 bytes + template tokens
    assert len(base.completions[0]) == 6  # 5 bytes + EOS
    # room for everything: untouched
    opts = TokenizeOptions(max_length=n_prompt + 6)
    ex = Tokenizer(tok, opts).example(_long_pair(10, 5, 3), 0)
    assert (ex.prompt_cut, ex.completion_cut) == (0, 0)
    # 4 tokens too many: the prompt (above its floor max_length // 2) loses its first 4 tokens, its end is kept
    ex = Tokenizer(tok, TokenizeOptions(max_length=n_prompt + 2)).example(_long_pair(10, 5, 3), 0)
    assert ex.prompt_ids == base.prompt_ids[4:]
    assert ex.completions == base.completions
    assert (ex.prompt_cut, ex.completion_cut) == (4, 0)
    # the prompt may not shrink below max_prompt_length: then the completions lose their tails
    opts = TokenizeOptions(max_length=12, max_prompt_length=8)
    ex = Tokenizer(tok, opts).example(_long_pair(10, 5, 3), 0)
    assert ex.prompt_ids == base.prompt_ids[-8:]
    assert ex.completions == (base.completions[0][:4], base.completions[1])  # chosen cut to 4, rejected (4) fits
    assert (ex.prompt_cut, ex.completion_cut) == (n_prompt - 8, 2)
    assert len(ex.prompt_ids) + max(map(len, ex.completions)) == 12


def test_truncation_counts_skip_and_error(tiny):
    _, tok = tiny
    records = [_long_pair(2, 2, 2), _long_pair(40, 2, 2), _long_pair(2, 2, 2)]
    n = len(Tokenizer(tok).example(records[0], 0).prompt_ids) + 3
    examples, stats = tokenize_records(records, tok, TokenizeOptions(max_length=n + 1, truncation="skip"))
    assert [ex.index for ex in examples] == [0, 2]
    assert stats.skipped == [1] and stats.rows == 3 and stats.truncated_rows == 0
    assert "1 skipped" in stats.summary()
    with pytest.raises(DataError, match="row 1"):
        tokenize_records(records, tok, TokenizeOptions(max_length=n + 1, truncation="error"))
    examples, stats = tokenize_records(records, tok, TokenizeOptions(max_length=n + 1, max_prompt_length=n - 2))
    assert len(examples) == 3 and stats.truncated_rows == 1
    assert stats.prompt_tokens_cut == len(Tokenizer(tok).example(records[1], 1).prompt_ids) - (n - 2)
    assert stats.completion_tokens_cut == 0


def test_weights_soft_labels_and_rankings(tiny):
    _, tok = tiny
    ex = Tokenizer(tok).example(PreferencePair("q", "a", "b", weight=2.5, preference_prob=0.8), 0)
    assert (ex.weight, ex.prob) == (2.5, 0.8)
    ranked = Tokenizer(tok).example(Ranking("q", ["a", "b", "c"], ranks=[2, 1, 3]), 4)  # listwise: K responses
    assert len(ranked.completions) == 3 and ranked.scores == (-2.0, -1.0, -3.0)
    with pytest.raises(DataError, match="row 4.*2 scores for 3 responses"):
        Tokenizer(tok).example(Ranking("q", ["a", "b", "c"], scores=[1, 0]), 4)


def test_template_with_default_system_prompt_keeps_prefix():
    """A template that injects a system turn (SmolLM2's does) still splits at the generation prompt."""
    t = tiny_tokenizer()
    t.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nDefault<|im_end|>\n{% endif %}" + t.chat_template
    )
    ex = Tokenizer(t).example(PreferencePair("Hi", "Yo", "No"), 0)
    assert t.decode(ex.prompt_ids).startswith("<|im_start|>system\nDefault<|im_end|>\n<|im_start|>user\nHi")
    assert ex.completions[0] == ids(t, "Yo") + [t.eos_token_id]


def test_an_hh_transcript_prompt_renders_turn_by_turn_in_training_and_sampling():
    from preflab.data.tokenize import as_messages
    from preflab.generation.sampler import chat_messages

    prompt = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    turns = [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you?"},
    ]
    assert as_messages(prompt, "user") == chat_messages(prompt) == turns
    assert as_messages("Human rights are ...", "user") == [{"role": "user", "content": "Human rights are ..."}]
    assert as_messages("\n\nHuman: hi\n\nAssistant:", "assistant")[0]["role"] == "assistant"  # completions stay
