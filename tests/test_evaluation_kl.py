"""KL(π‖π_ref) estimators against the exact KL: a categorical policy and a tiny LM over 2-token answers."""

import numpy as np
import pytest
import torch

from preflab.errors import DataError
from preflab.evaluation import estimate_kl, exact_kl
from preflab.evaluation.lm import chat_prompt_ids, sample_kl, sequence_logprobs


def _categorical(seed=0, k=12, shift=1.0):
    rng = np.random.default_rng(seed)
    p_logits = rng.normal(size=k) * 1.5
    q_logits = p_logits + shift * rng.normal(size=k)
    lp = p_logits - np.logaddexp.reduce(p_logits)
    lq = q_logits - np.logaddexp.reduce(q_logits)
    return lp, lq


def test_exact_kl_by_hand():
    p, q = np.log([0.5, 0.5]), np.log([0.9, 0.1])
    assert exact_kl(p, q) == pytest.approx(0.5 * np.log(0.5 / 0.9) + 0.5 * np.log(0.5 / 0.1))


def test_k1_and_k3_match_the_exact_kl_of_a_categorical_policy():
    lp, lq = _categorical()
    truth = float(exact_kl(lp, lq))
    rng = np.random.default_rng(1)
    y = rng.choice(len(lp), size=20000, p=np.exp(lp))
    est = estimate_kl(lp[y], lq[y])
    assert est.n == 20000
    assert abs(est.kl - truth) < 4 * est.se
    assert abs(est.k3 - truth) < 4 * est.k3_se
    # the SE is the exact sd of log π/π_ref under π divided by √n, to within sampling noise
    ratio = lp - lq
    sd = np.sqrt(np.sum(np.exp(lp) * (ratio - truth) ** 2))
    assert est.se == pytest.approx(sd / np.sqrt(20000), rel=0.05)


def test_k3_is_never_negative_and_has_lower_variance_near_the_reference():
    lp, lq = _categorical(seed=3, shift=0.1)  # π close to π_ref
    rng = np.random.default_rng(0)
    y = rng.choice(len(lp), size=5000, p=np.exp(lp))
    log_r = lq[y] - lp[y]
    assert np.all(np.expm1(log_r) - log_r >= 0)
    est = estimate_kl(lp[y], lq[y])
    assert est.k3_se < 0.2 * est.se
    assert est.k3 == pytest.approx(float(exact_kl(lp, lq)), rel=0.1)


def test_per_token_kl_and_validation():
    est = estimate_kl([-1.0, -2.0], [-1.5, -3.0], lengths=[2, 3])
    assert est.kl == pytest.approx(0.75)
    assert est.kl_per_token == pytest.approx(1.5 / 5)
    assert est.k2 == pytest.approx(0.5 * (0.25 + 1.0) / 2)
    with pytest.raises(DataError, match="reference log-probs"):
        estimate_kl([0.0, 1.0], [0.0])
    with pytest.raises(DataError, match="row 1"):
        estimate_kl([0.0, float("nan")], [0.0, 0.0])


def _sharpened(lm_head_noise: float = 0.0):
    """A tiny LM with peaked next-token distributions; with noise, an untied, perturbed lm-head."""
    from preflab.models import tiny_model

    model, tok = tiny_model(seed=0)
    with torch.no_grad():
        model.model.norm.weight.mul_(10.0)
        if lm_head_noise:
            emb = model.model.embed_tokens.weight.detach()
            noise = torch.randn(emb.shape, generator=torch.Generator().manual_seed(1))
            model.lm_head.weight = torch.nn.Parameter(emb + lm_head_noise * noise)
    return model, tok


def _exact_two_token_kl(policy, reference, prompt_ids, stops):
    """Exact KL between the distributions over answers of at most two tokens (EOS ends an answer)."""
    vocab = policy.config.vocab_size
    x = torch.tensor([prompt_ids])
    with torch.no_grad():
        lp1 = torch.log_softmax(policy(x).logits[0, -1].double(), -1)
        lq1 = torch.log_softmax(reference(x).logits[0, -1].double(), -1)
        both = torch.cat([x.repeat(vocab, 1), torch.arange(vocab).unsqueeze(1)], dim=1)
        lp2 = torch.log_softmax(policy(both).logits[:, -1].double(), -1)
        lq2 = torch.log_softmax(reference(both).logits[:, -1].double(), -1)
    kl2 = (lp2.exp() * (lp2 - lq2)).sum(-1)
    cont = torch.ones(vocab, dtype=torch.double)
    cont[list(stops)] = 0.0
    return float((lp1.exp() * ((lp1 - lq1) + cont * kl2)).sum())


def test_sequence_kl_of_a_tiny_lm_matches_the_exact_kl():
    policy, tok = _sharpened(0.02)
    reference, _ = _sharpened()
    prompts = ["hi", "what is 2+2?"]
    stops = {tok.eos_token_id}
    truth = np.mean([_exact_two_token_kl(policy, reference, chat_prompt_ids(tok, p), stops) for p in prompts])
    est, samples = sample_kl(
        policy, reference, tok, prompts, n_per_prompt=500, max_new_tokens=2, seed=0, batch_size=1000
    )
    assert truth > 0.5  # a KL worth measuring
    assert len(samples.completion_ids) == 1000
    assert all(1 <= len(c) <= 2 for c in samples.completion_ids)
    assert abs(est.kl - truth) < 4 * est.se, (est, truth)
    assert abs(est.k3 - truth) < 4 * est.k3_se, (est, truth)


@pytest.mark.parametrize("head", ["chunked", "full forward"])
def test_sequence_logprobs_match_a_manual_forward(tiny, head, monkeypatch):
    model, tok = tiny
    if head == "full forward":  # a config attribute that marks transformed logits: the chunked head is not used
        monkeypatch.setattr(model.config, "final_logit_softcapping", 30.0, raising=False)
    p_ids = chat_prompt_ids(tok, "abc")
    comps = [[70, 71, 72], [80]]
    got = sequence_logprobs(model, [p_ids, p_ids], comps, batch_size=2)
    for row, comp in enumerate(comps):
        ids = torch.tensor([p_ids + comp])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        want = sum(float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(comp))
        assert got[row] == pytest.approx(want, abs=1e-4)


def test_kl_from_the_sampling_pass_equals_scoring_the_policy_again():
    """The policy's log-probs taken from the rollout engine's pass (exact: its own weights, T=1, no truncation)
    give the KL that scoring the policy again gave, k1 and k3 alike, on the very same samples."""
    import dataclasses

    from preflab.generation.sampler import casts_weights

    policy, tok = _sharpened(0.02)
    reference, _ = _sharpened()
    prompts = ["hi", "what is 2+2?", "tell me a story"]
    est, samples = sample_kl(policy, reference, tok, prompts, n_per_prompt=30, max_new_tokens=8, seed=0, batch_size=64)
    assert samples.logprobs is not None  # taken from the pass: the policy was not scored
    rescored = sequence_logprobs(policy, samples.prompt_ids, samples.completion_ids, batch_size=16)
    np.testing.assert_allclose(samples.logprobs, rescored, rtol=0, atol=1e-4)
    old, _ = sample_kl(
        policy, reference, tok, prompts, n_per_prompt=30, samples=dataclasses.replace(samples, logprobs=None)
    )
    assert est.n == old.n == 90 and est.kl > 0.1
    for name in ("kl", "se", "k3", "k3_se", "k2", "kl_per_token"):
        assert getattr(est, name) == pytest.approx(getattr(old, name), rel=1e-5, abs=1e-5), name
    # decoding with bf16-cast weights is not exact: the samples carry no log-probs and both models are scored
    bf16_samples = sample_kl(policy, reference, tok, prompts[:1], max_new_tokens=4, bf16=True)[1]
    assert (bf16_samples.logprobs is None) == casts_weights(policy, None)
