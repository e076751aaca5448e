"""The rollout engine against Hugging Face ``generate``: the first-token distribution (seeded χ² tests), greedy
tokens, continuous batching (every completion back in order, log-probs that belong to its own prompt),
in-place weight sync after an optimiser step, and bad input rejected before any decoding."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy import stats

from preflab.errors import ConfigError
from preflab.generation import SamplingParams, sample
from preflab.generation import sampler as sampler_mod
from preflab.generation.decode import filter_logits
from preflab.generation.engine import supports_engine
from preflab.generation.sampler import render_prompts
from preflab.models import tiny_model

PROMPTS = ["hi", "tell me a story about a cat", "2+2?", "a much longer prompt with many more words in it", "ok"]


def first_token_probs(model, tok, prompt: str, temperature: float, top_p: float) -> torch.Tensor:
    ids = tok(render_prompts(tok, [prompt])[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[:, -1]
    return filter_logits(logits, temperature, 0, top_p).softmax(-1)[0].double()


def merged_bins(expected: torch.Tensor, minimum: float = 5.0) -> list[list[int]]:
    """Token ids grouped (most likely first) so that every group's expected count is at least ``minimum``."""
    groups, cur, mass = [], [], 0.0
    for t in torch.argsort(expected, descending=True).tolist():
        if expected[t] == 0:
            continue
        cur.append(t)
        mass += float(expected[t])
        if mass >= minimum:
            groups.append(cur)
            cur, mass = [], 0.0
    if cur:
        groups[-1] += cur
    return groups


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_first_token_distribution_matches_generate(tiny, temperature, top_p):
    model, tok = tiny
    n = 2000
    probs = first_token_probs(model, tok, "tell me a story", temperature, top_p)
    params = dict(max_new_tokens=1, temperature=temperature, top_p=top_p, n=n, batch_size=512, bf16=False, seed=11)
    ours = sample(model, tok, ["tell me a story"], SamplingParams(**params, engine="rollout"))[0]
    ref = sample(model, tok, ["tell me a story"], SamplingParams(**params, engine="generate"))[0]
    count = {
        name: torch.bincount(torch.tensor([c.token_ids[0] for c in row]), minlength=probs.numel()).double()
        for name, row in (("ours", ours), ("ref", ref))
    }
    assert count["ours"][probs == 0].sum() == 0  # tokens removed by top-p are never drawn
    groups = merged_bins(probs * n)
    obs = torch.tensor([[count[k][g].sum().item() for g in groups] for k in ("ours", "ref")])
    exp = torch.tensor([(probs[g].sum() * n).item() for g in groups])
    # goodness of fit to the model's exact distribution, and homogeneity with generate's draws (p = 0.001)
    gof = ((obs[0] - exp) ** 2 / exp).sum().item()
    assert gof < stats.chi2.ppf(0.999, len(groups) - 1)
    chi2, p_value, _, _ = stats.chi2_contingency(obs.numpy())
    assert p_value > 0.001, (chi2, p_value)


@pytest.fixture(params=[False, True], ids=["own-prefills", "shared-start"])
def share(request, monkeypatch):
    """Prefill each prompt on its own, or the start the prompts share (the chat template's) once for a batch."""
    from preflab.generation import prefill

    monkeypatch.setattr(prefill, "MIN_SAVED_TOKENS", 1 if request.param else 10**9)
    shared = []
    found = prefill.shared_start
    monkeypatch.setattr(prefill, "shared_start", lambda p: shared.append(found(p)) or shared[-1])
    yield shared if request.param else None
    if request.param:
        assert max(shared) > 0  # some prefill batch shared its start


def test_greedy_equals_generate_with_refills_and_early_stops(tiny, share):
    model, tok = tiny
    base = dict(max_new_tokens=10, temperature=0.0, bf16=False)
    plain = sample(model, tok, PROMPTS, SamplingParams(**base, engine="generate"))
    # make early greedy tokens of two prompts stop tokens, so those sequences leave and their rows are refilled
    stop = (plain[0][0].token_ids[2], plain[2][0].token_ids[4])
    ref = sample(model, tok, PROMPTS, SamplingParams(**base, stop_token_ids=stop, engine="generate"))
    assert ref[0][0].finish_reason == "stop" and len(ref[0][0].token_ids) <= 3
    for slots in (1, 2, 64):
        ours = sample(model, tok, PROMPTS, SamplingParams(**base, stop_token_ids=stop, batch_size=slots, n=2))
        assert [[c.token_ids for c in row] for row in ours] == [[row[0].token_ids] * 2 for row in ref]
        assert [row[0].finish_reason for row in ours] == [row[0].finish_reason for row in ref]


def test_continuous_batching_returns_every_completion_with_its_own_logprobs(tiny, share):
    model, tok = tiny
    stops = tuple(range(40, 70))  # frequent stop tokens: sequences end at different steps, rows are refilled
    params = SamplingParams(
        max_new_tokens=9,
        temperature=1.0,
        n=3,
        batch_size=4,
        seed=5,
        bf16=False,
        stop_token_ids=stops,
        return_logprobs=True,
        return_token_logprobs=True,
    )
    out = sample(model, tok, PROMPTS, params)
    assert [len(row) for row in out] == [3] * len(PROMPTS)
    lengths = [c.num_tokens for row in out for c in row]
    assert min(lengths) < 9 and max(lengths) == 9  # some stopped early, some ran to the limit
    rendered = render_prompts(tok, PROMPTS)
    for text, row in zip(rendered, out, strict=True):
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        for c in row:
            assert (c.finish_reason == "stop") == (c.token_ids[-1] in stops)
            assert all(t not in stops for t in c.token_ids[:-1])
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([prompt + c.token_ids])).logits[0].double(), -1)
            want = [logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(c.token_ids)]
            assert c.token_logprobs == pytest.approx(want, abs=1e-4)  # the completion continues *this* prompt
            assert c.logprob == pytest.approx(sum(want), abs=1e-3)


def test_same_seed_same_samples_and_slots_change_nothing_greedy(tiny):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, batch_size=3, seed=2, bf16=False)
    a, b = sample(model, tok, PROMPTS, params), sample(model, tok, PROMPTS, params)
    assert [[c.token_ids for c in row] for row in a] == [[c.token_ids for c in row] for row in b]


@pytest.mark.parametrize("temperature,n", [(0.0, 3), (1.0, 2)])
def test_kv_slots_never_exceed_the_sequences_and_change_no_sample(tiny, monkeypatch, temperature, n):
    """A batch larger than the sequences to decode allocates one K/V slot per sequence (greedy: one per prompt),
    and draws the very samples a batch that fits them exactly draws."""
    from preflab.generation import engine

    model, tok = tiny
    sizes = []
    original = engine.SlotCache.__init__

    def spy(self, slots, capacity):
        sizes.append(slots)
        original(self, slots, capacity)

    monkeypatch.setattr(engine.SlotCache, "__init__", spy)
    rows = len(PROMPTS) * (1 if temperature == 0 else n)
    out = {}
    for batch in (rows, 64):
        params = SamplingParams(max_new_tokens=6, temperature=temperature, n=n, batch_size=batch, seed=3, bf16=False)
        out[batch] = [[c.token_ids for c in row] for row in sample(model, tok, PROMPTS, params)]
    assert sizes == [rows, rows]
    assert out[64] == out[rows]


def _tiny_qwen3(tok):
    """A two-layer Qwen3 (q/k norms): the engine decodes it through the model's own forward, not the lean step."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from test_generation_lean import _sizes

    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = Qwen3ForCausalLM(Qwen3Config(**_sizes(tok), head_dim=16)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.3)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_bf16_decoding_is_as_close_to_the_float32_model_as_transformers_bf16_forward(tiny, arch):
    """The engine keeps bf16 keys and values as computed and multiplies them in bf16, in the lean step (Llama) and
    through the model's forward (Qwen3): the sampled tokens' log-probs are as far from the float32 model's as
    those of transformers' own bf16 forward."""
    from preflab.generation.engine import SlotCache

    model, tok = tiny
    if arch == "qwen3":
        model = _tiny_qwen3(tok)
    low = copy.deepcopy(model).to(torch.bfloat16)
    params = SamplingParams(max_new_tokens=12, temperature=1.0, n=3, batch_size=6, seed=4, return_token_logprobs=True)
    dtypes = []
    original = SlotCache.allocate_like

    def spy(self, keys, values):
        original(self, keys, values)
        dtypes.append((self.keys[0].dtype, self.values[0].dtype))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SlotCache, "allocate_like", spy)
        out = sample(low, tok, PROMPTS, params)
    assert dtypes == [(torch.bfloat16, torch.bfloat16)]
    engine_err, forward_err = [], []
    for text, row in zip(render_prompts(tok, PROMPTS), out, strict=True):
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        for c in row:
            ids = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                exact = model(ids).logits[0].double().log_softmax(-1)
                bf16 = low(ids).logits[0].double().log_softmax(-1)
            for k, t in enumerate(c.token_ids):
                ref = exact[len(prompt) - 1 + k, t].item()
                engine_err.append(abs(c.token_logprobs[k] - ref))
                forward_err.append(abs(bf16[len(prompt) - 1 + k, t].item() - ref))
    engine_mean, forward_mean = sum(engine_err) / len(engine_err), sum(forward_err) / len(forward_err)
    assert forward_mean > 1e-4  # bf16 is visibly inexact here ...
    assert engine_mean <= 1.5 * forward_mean  # ... and the engine no more so than transformers' forward


def _attention_inputs(dtype, rows=6, heads=6, kv_heads=2, width=23, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(rows, heads, 1, dim, generator=g).to(dtype)
    k = (2 * torch.randn(rows, kv_heads, width, dim, generator=g)).to(dtype)
    v = torch.randn(rows, kv_heads, width, dim, generator=g).to(dtype)
    start = torch.randint(0, width // 2, (rows,), generator=g)
    valid = torch.arange(width)[None, :] >= start[:, None]
    mask = torch.zeros(rows, 1, 1, width).masked_fill_(~valid[:, None, None, :], float("-inf"))
    return q, k, v, mask


def test_decoding_attention_is_exact_in_float32_and_computes_as_eager_attention_in_bf16():
    """float32: the exact attention up to float32 rounding. bf16: what transformers' eager attention computes for
    a bf16 model (repeated KV heads, bf16 products, float32 softmax), to a bf16 rounding."""
    from types import SimpleNamespace

    from transformers.models.llama.modeling_llama import eager_attention_forward

    from preflab.generation.engine import _decode_attention

    scale = 0.25  # a power of two: eager's bf16 scaling is then exact too
    q, k, v, mask = _attention_inputs(torch.float32)
    out, _ = _decode_attention(None, q, k, v, mask, scaling=scale)
    assert out.dtype == torch.float32
    groups = q.shape[1] // k.shape[1]
    k64, v64 = (x.double().repeat_interleave(groups, 1) for x in (k, v))
    exact = ((q.double() @ k64.transpose(-1, -2) * scale + mask.double()).softmax(-1) @ v64).transpose(1, 2)
    assert torch.allclose(out.double(), exact, atol=1e-6, rtol=0)

    q, k, v, mask = _attention_inputs(torch.bfloat16, seed=1)
    out, _ = _decode_attention(None, q, k, v, mask, scaling=scale)
    assert out.dtype == torch.bfloat16
    layer = SimpleNamespace(num_key_value_groups=groups, training=False)
    eager, _ = eager_attention_forward(layer, q, k, v, mask, scaling=scale)
    ulp = eager.double().abs().clamp(min=2**-20) * 2**-7  # two bf16 roundings of the output at most
    assert bool(((out.double() - eager.double()).abs() <= ulp).all())


def test_decoding_attention_reads_only_the_masks_columns_of_wider_keys_and_values():
    """The slot cache hands over whole rows (no copy) while the mask covers the width in use: the extra columns
    (stale or never written) change nothing."""
    from preflab.generation.engine import _decode_attention

    for dtype in (torch.float32, torch.bfloat16):
        q, k, v, mask = _attention_inputs(dtype, seed=2)
        narrow, _ = _decode_attention(None, q, k, v, mask, scaling=0.25)
        extra = torch.full((*v.shape[:2], 9, v.shape[3]), 1e4, dtype=dtype)
        wide, _ = _decode_attention(None, q, torch.cat([k, extra], 2), torch.cat([v, extra], 2), mask, scaling=0.25)
        assert torch.equal(wide, narrow)


def test_weights_synced_in_place_after_an_optimizer_step():
    model, tok = tiny_model(seed=3)
    params = SamplingParams(max_new_tokens=8, temperature=0.0, bf16=None)  # bf16 weights where the CPU has them
    before = [c[0].token_ids for c in sample(model, tok, PROMPTS, params)]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the cast was undone
    target = before[0][0]
    ids = tok(render_prompts(tok, PROMPTS[:1])[0], add_special_tokens=False, return_tensors="pt")["input_ids"]
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(3):  # push the first greedy token of prompt 0 away from what it was
        loss = model(ids).logits[0, -1].log_softmax(-1)[target]
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    after = [c[0].token_ids for c in sample(model, tok, PROMPTS, params)]
    assert after[0][0] != target
    ref = [
        c[0].token_ids for c in sample(model, tok, PROMPTS, SamplingParams(**{**params.__dict__, "engine": "generate"}))
    ]
    assert after == ref  # the engine and generate both read the updated weights


def test_bad_input_fails_before_decoding(tiny, monkeypatch):
    model, tok = tiny

    def no_work(*a, **k):
        raise AssertionError("decoding started")

    monkeypatch.setattr(sampler_mod, "rollout", no_work)
    short, short_tok = tiny_model(max_position_embeddings=32)
    with pytest.raises(ConfigError, match=r"prompt 1 has \d+ tokens; with max_new_tokens=8 .* context is 32") as e:
        sample(short, short_tok, ["hi", "word " * 40], SamplingParams(max_new_tokens=8))
    assert "\n" not in str(e.value) and e.value.field == "sampling.max_new_tokens"
    with pytest.raises(ConfigError, match="sampling.n"):
        SamplingParams(n=0)
    with pytest.raises(ConfigError, match="sampling.max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ConfigError, match="sampling.engine"):
        SamplingParams(engine="fast")
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(ConfigError, match="has no chat template") as e:
        sample(model, bare, ["hi"], SamplingParams())
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="sampling.return_token_logprobs"):
        sample(model, tok, ["hi"], SamplingParams(engine="generate", return_token_logprobs=True))


def test_engine_support_and_fallback(tiny):
    model, tok = tiny
    assert supports_engine(model)
    assert not supports_engine(torch.nn.Linear(2, 2))
    cfg = copy.deepcopy(model.config)
    cfg.model_type = "gpt2"
    fake = copy.copy(model)
    fake.config = cfg
    assert sampler_mod.pick_engine(fake) == "loop"
    with pytest.raises(ConfigError, match="does not support model type 'gpt2'"):
        sampler_mod.pick_engine(fake, "rollout")
    assert model.config._attn_implementation in ("sdpa", "eager")  # the engine restored the model's attention


def test_logprobs_are_in_the_models_dtype_when_decoding_casts_weights(tiny):
    model, tok = tiny
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, seed=4, bf16=None, return_logprobs=True)
    out = sample(model, tok, PROMPTS[:2], params)
    for text, row in zip(render_prompts(tok, PROMPTS[:2]), out, strict=True):
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        for c in row:
            assert c.token_logprobs is None  # not requested
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([prompt + c.token_ids])).logits[0].double(), -1)
            want = sum(logp[len(prompt) - 1 + k, t].item() for k, t in enumerate(c.token_ids))
            assert c.logprob == pytest.approx(want, abs=1e-3)  # fp32 scores, even where decoding ran in bf16


@pytest.mark.parametrize("engine", ["rollout", "loop", "generate"])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_on_prompt_done_reports_every_prompt_once_with_its_final_completions(tiny, engine, temperature):
    """The progress / partial-results callback: each prompt once, with exactly the completions returned; the
    rollout engine reports a prompt while others are still decoding (slots smaller than the work)."""
    model, tok = tiny
    prompts = PROMPTS * 2
    params = SamplingParams(
        max_new_tokens=6,
        temperature=temperature,
        n=3,
        batch_size=4,
        seed=2,
        engine=engine,
        return_logprobs=True,
        bf16=False,
    )
    seen: dict[int, list] = {}
    during: list[bool] = []

    def done(i, comps):
        assert i not in seen
        seen[i] = comps
        during.append(not torch.is_grad_enabled())  # decoding runs under no_grad; the end of sample() does not

    torch.set_grad_enabled(True)

    out = sample(model, tok, prompts, params, on_prompt_done=done)
    assert sorted(seen) == list(range(len(prompts)))
    assert all(seen[i] is out[i] or seen[i] == out[i] for i in range(len(prompts)))
    assert all(len(c) == 3 and all(x.logprob is not None for x in c) for c in out)
    assert out == sample(model, tok, prompts, params)  # the callback changes nothing
    if engine == "rollout":  # reported as each prompt ends, inside the decoding loop
        assert all(during)


def test_a_prefill_store_prefills_each_prompt_once_and_changes_no_sample(tiny, monkeypatch):
    """Greedy answers, then temperature-1 samples of the same prompts sharing a PrefillStore (the evaluation's
    policy): the second call runs no prefill and returns exactly what it returns on its own; a store entry made
    with other weights' dtype is not reused."""
    from preflab.generation.engine import PrefillStore

    model, tok = tiny
    stats = []
    original = sampler_mod.rollout

    def spy(*args, **kwargs):
        res = original(*args, **kwargs)
        stats.append(dict(res.stats))
        return res

    monkeypatch.setattr(sampler_mod, "rollout", spy)
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0, batch_size=64, seed=1, bf16=False)
    sampled = SamplingParams(max_new_tokens=6, temperature=1.0, n=2, batch_size=64, seed=2, bf16=False)
    sampled.return_token_logprobs = True
    store = PrefillStore()
    sample(model, tok, PROMPTS, greedy, prefills=store)
    assert len(store) == len(PROMPTS) and stats[-1]["prefill_calls"] > 0

    def rows(out):
        return [[(c.token_ids, c.token_logprobs) for c in row] for row in out]

    again = rows(sample(model, tok, PROMPTS, sampled, prefills=store))
    assert stats[-1]["prefill_calls"] == 0 and stats[-1]["prefills_reused"] == len(PROMPTS)
    assert again == rows(sample(model, tok, PROMPTS, sampled))
    assert stats[-1]["prefill_calls"] > 0 and stats[-1]["prefills_reused"] == 0
    other = copy.deepcopy(model).to(torch.float64)
    sample(other, tok, PROMPTS, sampled, prefills=store)
    assert stats[-1]["prefills_reused"] == 0 and len(store) == 2 * len(PROMPTS)


def test_shared_start_leaves_every_prompt_a_token_of_its_own():
    from preflab.generation.prefill import shared_start

    assert shared_start([[1, 2, 3], [1, 2, 4, 5]]) == 2
    assert shared_start([[1, 2], [1, 2, 3]]) == 1  # the shorter prompt keeps its last token for its logits
    assert shared_start([[1, 2, 3], [1, 2, 3]]) == 2
    assert shared_start([[4, 2], [1, 2]]) == 0
