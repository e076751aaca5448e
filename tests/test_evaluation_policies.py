"""Model-level evaluation on tiny LMs: evaluate_policies (incl. a LoRA policy against its own base) and run_eval."""

import json

import numpy as np
import pytest

from preflab.config import load_config
from preflab.evaluation import EvalResult, estimate_kl
from preflab.evaluation.lm import sequence_logprobs
from preflab.evaluation.policies import EvalSampling, LabeledPrompt, evaluate_policies
from preflab.evaluation.runner import load_prompts, run_eval
from preflab.feedback import Judge

PROMPTS = ["hello", "what is 2+2?", "name a colour", "say hi", "count to three", "bye"]


class ShorterIsBetter(Judge):
    name = "shorter"

    def score(self, prompt, response):
        return 1.0 / (1.0 + len(response))

    def compare(self, prompt, a, b):
        return 1.0 if len(a) < len(b) else 0.0 if len(a) > len(b) else 0.5


def _lora(model, init):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=init)
    import torch

    torch.manual_seed(0)
    return get_peft_model(model, cfg)


def test_identical_policies_tie_everywhere_and_have_zero_kl():
    from preflab.models import tiny_model

    base, tok = tiny_model(seed=0)
    policy = _lora(base, init=True)  # LoRA B = 0: the policy *is* its base
    res = evaluate_policies(
        policy,
        None,
        tok,
        PROMPTS,
        ShorterIsBetter(),
        EvalSampling(max_new_tokens=6, temperature=1.0, seed=3),
        bf16=False,
        n_bootstrap=100,
        lc_bootstrap=0,
        null_check=False,
    )
    assert res.win_rate.win_rate == 0.5 and res.win_rate.ties == len(PROMPTS)
    assert all(s["a"] == s["b"] for s in res.samples)
    assert res.kl.kl == pytest.approx(0.0, abs=1e-5) and res.kl.n == len(PROMPTS)
    assert res.lc_win_rate.lc_win_rate == pytest.approx(0.5, abs=1e-3)


def test_evaluate_policies_numbers_are_consistent_with_their_samples():
    from preflab.models import tiny_model

    base, tok = tiny_model(seed=0)
    reference, _ = tiny_model(seed=0)
    policy = _lora(base, init=False)  # random adapters: a different policy
    judge = ShorterIsBetter()
    res = evaluate_policies(
        policy,
        reference,
        tok,
        PROMPTS,
        judge,
        EvalSampling(max_new_tokens=6, temperature=1.0, seed=0),
        bf16=False,
        n_bootstrap=100,
        lc_bootstrap=10,
        name="lora_vs_base",
    )
    prefs = [judge.compare(None, s["a"], s["b"]) for s in res.samples]
    assert res.win_rate.win_rate == pytest.approx(np.mean(prefs))
    assert res.win_rate.per_prompt == prefs
    assert [s["prompt"] for s in res.samples] == PROMPTS
    assert res.gold[0].family == "all" and res.gold[0].a.value == pytest.approx(
        np.mean([judge.score(None, s["a"]) for s in res.samples])
    )
    assert res.kl.n == len(PROMPTS) and res.kl.kl != 0.0
    assert set(res.meta["seconds"]) == {"sampling", "judging", "kl"}
    # the null check ran under this judge: the empty answer is shortest, so it wins — the judge is unreliable
    assert not res.null_check.reliable and res.null_check.worst.name == "empty"


def test_loaders_give_the_same_result_and_the_policy_is_gone_before_the_reference_loads():
    # models given as loaders: the policy does all its work first and is let go before the reference is loaded
    # (the quickstart's peak memory), with the same answers, win rate and KL as models given directly
    import gc
    import weakref

    from preflab.models import tiny_model

    def policy_model():
        base, _ = tiny_model(seed=0)
        return _lora(base, init=False)

    tok = tiny_model(seed=0)[1]
    args = (tok, PROMPTS, ShorterIsBetter(), EvalSampling(max_new_tokens=6, temperature=0.0, seed=0))
    kw = dict(bf16=False, n_bootstrap=50, lc_bootstrap=0, null_check=False)
    direct = evaluate_policies(policy_model(), tiny_model(seed=0)[0], *args, **kw)
    alive: list = []
    order: list = []

    def load_policy():
        order.append("policy")
        model = policy_model()
        alive.append(weakref.ref(model))
        return model

    def load_reference():
        gc.collect()
        order.append("reference")
        assert alive and alive[0]() is None, "the policy is still in memory when the reference loads"
        return tiny_model(seed=0)[0]

    lazy = evaluate_policies(load_policy, load_reference, *args, **kw)
    assert order == ["policy", "reference"]
    assert [(s["a"], s["b"]) for s in lazy.samples] == [(s["a"], s["b"]) for s in direct.samples]
    assert any(s["a"] != s["b"] for s in lazy.samples)  # two different policies
    assert lazy.win_rate.win_rate == direct.win_rate.win_rate
    assert lazy.kl.kl == pytest.approx(direct.kl.kl, rel=1e-6) and lazy.kl.kl != 0.0


def test_pair_ranking_accuracy_with_loaders_scores_the_policy_first_and_lets_it_go(tmp_path):
    import gc
    import weakref

    from preflab.data import PreferencePair
    from preflab.evaluation.policies import pair_ranking_accuracy
    from preflab.models import tiny_model

    def policy_model():
        base, _ = tiny_model(seed=0)
        return _lora(base, init=False)

    tok = tiny_model(seed=0)[1]
    pairs = [PreferencePair(p, "yes " + p, "no") for p in PROMPTS]
    direct = pair_ranking_accuracy(policy_model(), tiny_model(seed=0)[0], tok, pairs, beta=0.5)
    alive: list = []

    def load_policy():
        model = policy_model()
        alive.append(weakref.ref(model))
        return model

    def load_reference():
        gc.collect()
        assert alive and alive[0]() is None, "the policy is still in memory when the reference loads"
        return tiny_model(seed=0)[0]

    lazy = pair_ranking_accuracy(load_policy, load_reference, tok, pairs, beta=0.5)
    assert lazy.per_pair.keys() == direct.per_pair.keys() and lazy.per_pair
    for key, values in direct.per_pair.items():
        assert lazy.per_pair[key] == pytest.approx(values, abs=1e-6), key
    assert lazy.implicit_reward.value == pytest.approx(direct.implicit_reward.value)


def test_kl_uses_exact_token_ids_of_the_policy_samples(tiny):
    from preflab.evaluation.lm import sample_completions

    model, tok = tiny
    samples = sample_completions(model, tok, PROMPTS[:3], n_per_prompt=2, max_new_tokens=5, seed=1)
    assert samples.prompt_index == [0, 0, 1, 1, 2, 2]
    assert all(1 <= len(c) <= 5 for c in samples.completion_ids)
    lp = sequence_logprobs(model, samples.prompt_ids, samples.completion_ids)
    est = estimate_kl(lp, lp)
    assert est.kl == 0.0 and est.k3 == 0.0
    again = sample_completions(model, tok, PROMPTS[:3], n_per_prompt=2, max_new_tokens=5, seed=1)
    assert again.completion_ids == samples.completion_ids  # seeded


def test_run_eval_from_a_config(tmp_path, tiny_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS) + "\n")
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel:\n  name_or_path: {tiny_dir}\n"
        f"eval:\n  prompts: {prompts}\n  n_prompts: 4\n  max_new_tokens: 4\n  n_bootstrap: 50\n"
        "  lc_bootstrap: 0\n  bf16: false\n  null_check: false\n"
    )
    cfg = load_config(cfg_path)
    result, path = run_eval(cfg, judge=ShorterIsBetter())
    assert path == tmp_path / "run" / "eval" / "policy_vs_reference.json"
    loaded = EvalResult.load(path)
    assert loaded.win_rate.n == 4
    # policy and reference are the same checkpoint: every answer pair ties and KL is zero
    assert loaded.win_rate.win_rate == 0.5
    assert loaded.kl.kl == pytest.approx(0.0, abs=1e-5)
    assert loaded.meta["eval_config"]["n_prompts"] == 4


def test_run_eval_with_pairs_reports_their_ranking_accuracy(tmp_path, tiny_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": "yes " + p, "rejected": "no"}) + "\n" for p in PROMPTS))
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.name_or_path={tiny_dir}",
            f"eval.prompts={prompts}",
            f"eval.pairs={pairs}",
            "eval.max_new_tokens=3",
            "eval.n_bootstrap=50",
            "eval.lc_bootstrap=0",
            "eval.null_check=false",
            "eval.bf16=false",
        ],
    )
    result, path = run_eval(cfg, judge=ShorterIsBetter())
    ranking = EvalResult.load(path).ranking
    assert ranking is not None and ranking.n == len(PROMPTS)
    # policy and reference are the same checkpoint: every implicit reward is 0 (a tie, counted ½)
    assert result.ranking.implicit_reward.value == pytest.approx(0.5)
    assert result.ranking.reference_logprob.value == result.ranking.policy_logprob.value


def test_run_eval_names_a_missing_reference_before_the_policy_samples(tmp_path, tiny_dir, monkeypatch):
    # the models are loaded lazily (the policy is let go before the reference loads), but a reference that is not
    # there is still an error before any work
    import preflab.evaluation.policies as policies
    from preflab.errors import ModelNotFoundError

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    cfg = load_config(
        None,
        [
            f"output_dir={tmp_path / 'run'}",
            f"model.name_or_path={tiny_dir}",
            f"eval.prompts={prompts}",
            f"eval.reference={tmp_path / 'gone'}",
        ],
    )

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the reference was checked")

    monkeypatch.setattr(policies, "_sample", no_sampling)
    with pytest.raises(ModelNotFoundError) as err:
        run_eval(cfg, judge=ShorterIsBetter())
    assert "gone" in str(err.value)


def test_load_prompts_formats_and_errors(tmp_path):
    from preflab.errors import DataError

    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\nthree\n")
    assert load_prompts(txt) == ["one", "two", "three"]
    assert load_prompts(txt, limit=2) == ["one", "two"]
    rows = tmp_path / "p.jsonl"
    rows.write_text('{"prompt": "a", "family": "f"}\n{"prompt": "b"}\n{"text": "c"}\n')
    with pytest.raises(DataError, match=r"p.jsonl, line 3.*'prompt'"):
        load_prompts(rows)
    rows.write_text('{"prompt": "a", "family": "f"}\n{"prompt": "b"}\n')
    # a labelled plain prompt (was a dict that crashed the sampler, issue 23 item 6)
    assert load_prompts(rows) == [LabeledPrompt("a", "f"), "b"]


def test_eval_cli_on_a_task_suite_with_the_gold_judge(tmp_path, tiny_dir):
    pytest.importorskip("preflab.feedback.judges")
    from typer.testing import CliRunner

    from preflab.cli import app

    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(
        f"output_dir: {tmp_path / 'run'}\nmodel:\n  name_or_path: {tiny_dir}\n"
        "eval:\n  suite: default\n  n_prompts: 8\n  max_new_tokens: 4\n  n_bootstrap: 50\n  lc_bootstrap: 0\n"
        "  bf16: false\n  kl: false\n"
    )
    out = CliRunner().invoke(app, ["eval", str(cfg_path)])
    assert out.exit_code == 0, out.output
    assert "win rate" in out.output and "null check" in out.output and "report.html" in out.output
    res = EvalResult.load(tmp_path / "run" / "eval" / "policy_vs_reference.json")
    assert res.judge == "gold" and res.win_rate.n == 8
    assert len({g.family for g in res.gold}) > 2  # one row per task family, plus "all"
    assert (tmp_path / "run" / "report" / "report.html").is_file()
