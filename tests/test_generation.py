"""Sampling: determinism by seed, n samples, EOS handling, log-probs against a direct computation."""

from __future__ import annotations

import pytest
import torch

from preflab.errors import ConfigError
from preflab.generation import (
    HFBackend,
    SamplingParams,
    completion_logprobs,
    generate_chat,
    make_backend,
    sample,
    vllm_available,
)
from preflab.generation.sampler import _completion_mask, render_prompts

PROMPTS = ["hi", "tell me a story about a cat", [{"role": "user", "content": "2+2?"}]]


def texts(result):
    return [[c.text for c in row] for row in result]


def test_same_seed_same_samples_and_global_rng_untouched(tiny):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=12, temperature=1.0, n=3, seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = sample(model, tok, PROMPTS, params)
    after = torch.rand(1)
    assert torch.equal(before, after)  # sampling ran in a forked RNG
    b = sample(model, tok, PROMPTS, params)
    c = sample(model, tok, PROMPTS, SamplingParams(max_new_tokens=12, temperature=1.0, n=3, seed=8))
    assert texts(a) == texts(b)
    assert [[x.token_ids for x in row] for row in a] == [[x.token_ids for x in row] for row in b]
    assert texts(a) != texts(c)
    assert [len(row) for row in a] == [3, 3, 3]
    assert all(len(x.token_ids) == 12 and x.finish_reason == "length" for row in a for x in row)
    assert len({x.text for x in a[1]}) == 3  # three distinct samples of one prompt


def test_greedy_is_batch_size_invariant_and_generate_chat_matches(tiny):
    model, tok = tiny
    base = dict(max_new_tokens=10, temperature=0.0, bf16=False)
    one = sample(model, tok, PROMPTS, SamplingParams(batch_size=1, n=2, **base))
    many = sample(model, tok, PROMPTS, SamplingParams(batch_size=8, n=2, **base))
    assert texts(one) == texts(many)
    assert all(row[0].token_ids == row[1].token_ids for row in one)  # greedy: n identical completions
    assert generate_chat(model, tok, PROMPTS, SamplingParams(**base)) == [row[0].text for row in one]


def test_stop_token_ends_completion(tiny):
    model, tok = tiny
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0, bf16=False)
    first = sample(model, tok, ["hi"], greedy)[0][0].token_ids
    stop = first[2]  # make the third greedy token a stop token
    out = sample(
        model, tok, ["hi"], SamplingParams(max_new_tokens=6, temperature=0.0, bf16=False, stop_token_ids=(stop,))
    )[0][0]
    cut = first.index(stop) + 1
    assert out.token_ids == first[:cut] and out.finish_reason == "stop"
    assert out.text == tok.decode(first[:cut], skip_special_tokens=True).strip()


def test_completion_mask_keeps_first_eos_only():
    new = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8], [2, 9, 2, 2]])
    assert _completion_mask(new, [2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_logprobs_match_unpadded_forward(tiny):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=8, temperature=1.0, n=2, seed=3, return_logprobs=True, bf16=False)
    result = sample(model, tok, PROMPTS, params)
    rendered = render_prompts(tok, PROMPTS)
    for prompt_text, row in zip(rendered, result, strict=True):
        prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
        for comp in row:
            ids = torch.tensor([prompt_ids + comp.token_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            expected = sum(logp[len(prompt_ids) - 1 + t, tok_id].item() for t, tok_id in enumerate(comp.token_ids))
            assert comp.logprob == pytest.approx(expected, abs=1e-3)


def test_completion_logprobs_masks_padding(tiny):
    model, _ = tiny
    seq = torch.tensor([[0, 0, 10, 11, 12, 13], [0, 20, 21, 22, 23, 24]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    comp_mask = torch.tensor([[1, 0], [1, 1]])
    got = completion_logprobs(model, seq, prompt_mask, comp_mask, bf16=False)
    with torch.no_grad():
        lp0 = torch.log_softmax(model(torch.tensor([[10, 11, 12]])).logits[0], -1)[1, 12].item()
        lp1 = torch.log_softmax(model(torch.tensor([[20, 21, 22, 23, 24]])).logits[0], -1)
    assert got[0].item() == pytest.approx(lp0, abs=1e-4)
    assert got[1].item() == pytest.approx(lp1[2, 23].item() + lp1[3, 24].item(), abs=1e-4)


def test_backends_and_param_validation(tiny):
    model, tok = tiny
    backend = make_backend("auto", model=model, tokenizer=tok)
    assert isinstance(backend, HFBackend)
    assert texts(backend.generate(["hi"], SamplingParams(max_new_tokens=4, seed=1))) == texts(
        sample(model, tok, ["hi"], SamplingParams(max_new_tokens=4, seed=1))
    )
    if not vllm_available():
        with pytest.raises(ConfigError, match="vllm"):
            make_backend("vllm", model_path="x")
    with pytest.raises(ConfigError, match="unknown sampler backend"):
        make_backend("tgi", model=model, tokenizer=tok)
    with pytest.raises(ConfigError, match="sampling.top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ConfigError, match="sampling.n"):
        SamplingParams(n=0)
    assert sample(model, tok, [], SamplingParams()) == []
