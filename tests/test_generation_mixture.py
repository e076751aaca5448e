"""Nash-MD's sampler: tokens drawn from the per-token geometric mixture π^{1−m} π_ref^{m} (two KV caches)."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from preflab.generation.decode import decode
from preflab.generation.mixture import mixture_decode, mixture_logits, sample_mixture
from preflab.generation.sampler import SamplingParams
from preflab.models import tiny_model

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}


@pytest.fixture(scope="module")
def pair():
    """Two different tiny models with peaked next-token distributions (lm-heads scaled up)."""
    policy, tok = tiny_model(**TINY, seed=0)
    reference, _ = tiny_model(**TINY, seed=1)
    with torch.no_grad():
        policy.lm_head.weight.mul_(8.0)
        reference.lm_head.weight.mul_(8.0)
    return policy.eval(), reference.eval(), tok


def _prompt(tok, n=1):
    enc = tok(["hello there"] * n, return_tensors="pt", add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _exact(policy, reference, ids, mix):
    """softmax((1 − m) log π + m log π_ref) of the next token after ``ids``, from full forwards (no cache)."""
    with torch.no_grad():
        lp = policy(ids).logits[:, -1].double().log_softmax(-1)
        lr = reference(ids).logits[:, -1].double().log_softmax(-1)
    return ((1 - mix) * lp + mix * lr).softmax(-1)


def test_mixture_logits_are_the_log_of_the_geometric_mixture():
    p = torch.tensor([[0.7, 0.2, 0.1]]).log() + 3.0  # unnormalised logits
    r = torch.tensor([[0.1, 0.1, 0.8]]).log() - 1.0
    got = mixture_logits(p, r, 0.5).softmax(-1)
    geo = torch.tensor([0.7 * 0.1, 0.2 * 0.1, 0.1 * 0.8]).sqrt()
    assert got[0].tolist() == pytest.approx((geo / geo.sum()).tolist(), abs=1e-6)
    assert torch.equal(mixture_logits(p, r, 0.0), p.log_softmax(-1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mixture_logits(p, r, 1.5)


@pytest.mark.parametrize("mix", [0.25, 0.5, 0.9])
def test_each_steps_distribution_is_the_normalised_geometric_mixture(pair, mix):
    """Steps 0, 1, 2 (the KV caches in use): the decoder's mixed logits equal full forwards of the prefix."""
    policy, reference, tok = pair
    ids, mask = _prompt(tok)
    seen = {}
    new = mixture_decode(
        policy,
        reference,
        ids,
        mask,
        mix=mix,
        max_new_tokens=3,
        stop_ids=[-1],
        pad_id=0,
        on_step=lambda t, rows, logits: seen.__setitem__(t, logits.clone()),
    )
    assert sorted(seen) == [0, 1, 2]
    for t in range(3):
        prefix = torch.cat([ids, new[:, :t]], dim=1)
        exact = _exact(policy, reference, prefix, mix)
        assert (seen[t].double().softmax(-1) - exact).abs().max().item() < 1e-5, t


def test_first_tokens_follow_the_mixture_chi_square(pair):
    policy, reference, tok = pair
    mix, n = 0.5, 3000
    ids, mask = _prompt(tok, n)
    gen = torch.Generator().manual_seed(0)
    first = mixture_decode(
        policy, reference, ids, mask, mix=mix, max_new_tokens=1, stop_ids=[-1], pad_id=0, generator=gen
    )[:, 0]
    probs = _exact(policy, reference, ids[:1], mix)[0]
    big = probs * n >= 5  # bins with an expected count of at least 5; the rest pooled
    assert int(big.sum()) >= 3  # a distribution with several likely tokens, not one
    counts = torch.bincount(first, minlength=probs.numel()).double()
    observed = torch.cat([counts[big], counts[~big].sum(0, keepdim=True)])
    expected = torch.cat([probs[big], probs[~big].sum(0, keepdim=True)]) * n
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3
    # the policy alone is a different distribution: the test can tell the two apart
    alone = _exact(policy, reference, ids[:1], 0.0)[0]
    exp_alone = torch.cat([alone[big], alone[~big].sum(0, keepdim=True)]) * n
    assert chisquare(observed.numpy(), (exp_alone * n / exp_alone.sum()).numpy()).pvalue < 1e-6


def test_mix_zero_is_the_policy_and_mix_one_the_reference(pair):
    policy, reference, tok = pair
    ids, mask = _prompt(tok, 6)
    kw = dict(max_new_tokens=8, stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id or 0)
    with torch.no_grad():
        for mix, alone in ((0.0, policy), (1.0, reference)):
            a = mixture_decode(policy, reference, ids, mask, mix=mix, generator=torch.Generator().manual_seed(3), **kw)
            b = decode(alone, ids, mask, generator=torch.Generator().manual_seed(3), **kw)
            assert torch.equal(a, b), mix


def test_sample_mixture_with_a_lora_policy_mixes_with_its_base(pair):
    """A LoRA policy whose adapters add nothing: mixing with its own base (adapters off) is the base itself."""
    from preflab.models.policy import apply_lora

    base, _, tok = pair
    import copy

    lora = apply_lora(copy.deepcopy(base), r=2, dropout=0.0).eval()
    params = SamplingParams(max_new_tokens=5, temperature=1.0, n=2, seed=7)
    a = sample_mixture(lora, tok, ["hi", "yo"], params, mix=0.5, reference_context=lora.disable_adapter)
    b = sample_mixture(base, tok, ["hi", "yo"], params, mix=0.0)
    assert [[c.token_ids for c in g] for g in a] == [[c.token_ids for c in g] for g in b]
    assert all(len(g) == 2 and g[0].metadata == {"mixture": 0.5} for g in a)
