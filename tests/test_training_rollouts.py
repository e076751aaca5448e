"""The rollout schedule: G samples per prompt from the current policy, judged rewards, per-token advantages,
epochs of minibatches through the one training loop; bad rewards stop the run before the weights change; a run
resumed mid-rollout equals an uninterrupted one."""

from __future__ import annotations

import math

import pytest
import torch

from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError, DataError
from preflab.feedback.judges.reward_model import RewardFnJudge
from preflab.generation.sampler import Completion
from preflab.models import tiny_model, tiny_tokenizer
from preflab.objectives.policy_gradient import PolicyGradientParams
from preflab.training import read_metrics, train
from preflab.training.rollout_batches import to_padded
from preflab.training.rollouts import RolloutSchedule
from test_training_resume import Killed, kill_at
from test_training_utils import LengthJudge, make_cfg, state

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]


def length_reward() -> RewardFnJudge:
    return RewardFnJudge(lambda prompts, responses: [len(r) / 10 for r in responses], name="length")


def _cfg(out, algorithm, *extra):
    return make_cfg(
        out,
        f"algorithm={algorithm}",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.lr=1e-3",
        "online.max_new_tokens=5",
        "online.temperature=1.0",
        "rollout.group_size=4",
        "rollout.prompts_per_rollout=2",
        "train.save_final=false",
        *extra,
    )


def _scripted(texts, algorithm, group_size, greedy_texts=None):
    """A rollout schedule over PROMPTS[:2] whose sampler returns ``texts[i]`` for prompt i (``greedy_texts[i]``
    when asked for a greedy completion) and whose scorer returns −1 for every token; one rollout drawn."""
    tok = tiny_tokenizer()

    def sample(prompts, seed, n, greedy=False):
        rows = [[t] for t in greedy_texts] if greedy else texts
        return [
            [Completion(t, tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id], "stop") for t in rows[i]]
            for i in range(len(prompts))
        ]

    def score(batch):
        n = int(batch.sequences.completion_lengths.sum())
        return torch.full((n,), -1.0), None

    sched = RolloutSchedule(
        PROMPTS[:2],
        sample,
        length_reward(),
        Tokenizer(tok),
        4,
        algorithm=algorithm,
        params=PolicyGradientParams(beta=0.0),
        score_fn=score,
        ref_fn=lambda b: None,
        group_size=group_size,
        prompts_per_rollout=2,
        seed=1,
    )
    sched._prompt_order = type(sched._prompt_order)(2, 1, shuffle=False)
    return sched, tok


def _changed(before, model) -> bool:
    after = state(model)
    return any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "algorithm", ["grpo", "ppo", *(pytest.param(a, marks=pytest.mark.slow) for a in ("rloo", "reinforce_pp", "remax"))]
)
def test_each_algorithm_trains_through_the_loop(tmp_path, algorithm):
    model, tok = tiny_model()
    before = state(model)
    result = train(_cfg(tmp_path, algorithm), records=PROMPTS, model=model, tokenizer=tok, judge=length_reward())
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and result.steps == 4
    # 2 prompts × 4 samples = 8 completions per rollout, minibatches of 4: two steps per rollout
    assert [r["rollout/index"] for r in rows] == [1, 1, 2, 2]
    assert rows[0]["time/rollout"] > 0 and rows[1]["time/rollout"] == 0 and rows[2]["time/rollout"] > 0
    assert rows[1]["time/update"] == pytest.approx(rows[1]["step_time"])
    # step 1: π = π_old = π_ref (old log-probs from a no-grad pass over other batches of the same rows)
    assert rows[0]["ratio"] == pytest.approx(1.0, abs=1e-5) and rows[0]["clip_fraction"] == 0.0
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5) and rows[0]["rollout/kl"] == pytest.approx(0.0, abs=1e-4)
    for r in rows:
        assert 0 < r["rollout/response_length"] <= 5 and 0 <= r["rollout/truncated"] <= 1
        assert r["entropy"] > 0 and r["rollout/entropy"] > 0 and math.isfinite(r["loss"])
        assert "rollout/gold_reward" not in r  # a custom judge: no gold scorer known
    if algorithm == "ppo":
        assert all(r["loss/value"] > 0 for r in rows)
    assert _changed(before, model)


def test_one_minibatch_per_rollout_takes_pi_old_from_the_update_itself(tmp_path):
    model, tok = tiny_model()
    train(
        _cfg(tmp_path, "grpo", "train.batch_size=8", "objective.params.beta=0"),
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=length_reward(),
    )
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [r["rollout/index"] for r in rows] == [1, 2, 3, 4]
    assert all(r["ratio"] == 1.0 and r["clip_fraction"] == 0.0 for r in rows)  # exactly on-policy
    assert all("rollout/kl" not in r and "kl" not in r for r in rows)  # β = 0: no reference at all


def test_the_task_suite_gold_scorer_is_the_reward_by_default(tmp_path):
    model, tok = tiny_model()
    cfg = _cfg(tmp_path, "rloo", "online.num_prompts=4", "train.max_steps=2")
    train(cfg, model=model, tokenizer=tok)  # no data, no judge: the default suite's prompts and gold scorers
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert rows[0]["rollout/gold_reward"] == rows[0]["rollout/reward"]


def test_a_rollout_is_judged_once_and_its_advantages_are_the_estimators(tmp_path):
    texts = [["a", "bbb", "cc", "dddd"], ["e", "ff", "ggg", "h"]]
    sched, tok = _scripted(texts, "rloo", 4)
    batches = [sched.next_batch(), sched.next_batch()]
    adv = sched.data.tensors["advantages"]
    rewards = torch.tensor([0.1, 0.3, 0.2, 0.4, 0.1, 0.2, 0.3, 0.1])
    loo = [rewards[i] - (rewards[(i // 4) * 4 : (i // 4) * 4 + 4].sum() - rewards[i]) / 3 for i in range(8)]
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for ts in texts for t in ts]
    for i in range(8):
        assert adv[i, : lengths[i]].tolist() == pytest.approx([float(loo[i])] * lengths[i], abs=1e-6)
        assert adv[i, lengths[i] :].abs().sum() == 0
    assert sched.metrics()["rollout/reward"] == pytest.approx(float(rewards.mean()))
    seen = sorted(i for b in batches for i in b.index.tolist())
    assert seen == list(range(8))  # one epoch = every completion once


def test_prefix_shared_rollouts_encode_each_prompt_once_with_the_same_log_probs(tmp_path):
    from preflab.models.logprobs import SequenceScorer
    from preflab.training.rollout_batches import rollout_batch

    model, tok = tiny_model()
    tk = Tokenizer(tok)
    exs = [
        tk.from_ids(i, tk.prompt_ids(PROMPTS[i // 3]), [tok(t, add_special_tokens=False)["input_ids"]])
        for i, t in enumerate(["ab", "c", "def", "gh", "ijkl", "m"])
    ]
    scorer = SequenceScorer(model).eval()
    padded, order_p = rollout_batch(exs, "padded", 0)
    shared, order_s = rollout_batch(exs, "prefix_shared", 0)
    assert order_p == list(range(6)) and order_s == [0, 3, 1, 4, 2, 5]
    assert shared.sequences.input_ids.shape[0] == 2  # one row per prompt
    with torch.no_grad():
        a = to_padded(scorer(padded.sequences, per_token=True)[0], padded)
        b = to_padded(scorer(shared.sequences, per_token=True)[0], shared)[torch.argsort(torch.tensor(order_s))]
    assert torch.allclose(a, b, atol=1e-5)
    _, order_mixed = rollout_batch(exs[:5], "prefix_shared", 0)  # groups of 3 and 2: one row per completion
    assert order_mixed == list(range(5))


def test_prefix_shared_layout_trains_like_padded(tmp_path):
    rows = {}
    for layout in ("padded", "prefix_shared"):
        model, tok = tiny_model()
        train(
            _cfg(
                tmp_path / layout,
                "rloo",
                "train.batch_size=8",
                "objective.params.beta=0",
                "train.max_steps=2",
                f"train.layout={layout}",
            ),
            records=PROMPTS,
            model=model,
            tokenizer=tok,
            judge=length_reward(),
        )
        rows[layout] = read_metrics(tmp_path / layout / "metrics.jsonl", "train")
    assert [r["loss"] for r in rows["padded"]] == pytest.approx([r["loss"] for r in rows["prefix_shared"]], abs=1e-5)


def test_to_padded_follows_the_plan():
    from preflab.data.collate import collate_sequences

    seqs = collate_sequences([([1, 2], [[3, 4, 5]]), ([6], [[7]])], "padded", 0)
    out = to_padded(torch.arange(4.0), seqs)
    assert out.tolist() == [[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]


class NaNJudge(RewardFnJudge):
    def __init__(self):
        super().__init__(lambda p, r: [float("nan") if i == 2 else 1.0 for i in range(len(r))], name="nan")


def test_bad_rewards_stop_the_run_before_the_weights_change(tmp_path):
    model, tok = tiny_model()
    before = state(model)
    with pytest.raises(DataError, match="judge 'nan' returned a non-finite reward \\(nan\\) for completion 3") as err:
        train(_cfg(tmp_path / "nan", "grpo"), records=PROMPTS, model=model, tokenizer=tok, judge=NaNJudge())
    assert err.value.field == "online.judge" and err.value.row == 0
    short = RewardFnJudge(lambda p, r: [1.0] * (len(r) - 1), name="short")
    with pytest.raises(DataError, match="judge 'short' returned 7 rewards for 8 completions"):
        train(_cfg(tmp_path / "short", "rloo"), records=PROMPTS, model=model, tokenizer=tok, judge=short)
    assert not _changed(before, model)


def test_a_judge_that_cannot_score_is_a_config_error_unless_rewards_are_win_rates(tmp_path):
    model, tok = tiny_model()
    with pytest.raises(ConfigError, match="judge 'length' only compares pairs") as err:
        train(_cfg(tmp_path / "a", "rloo"), records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge())
    assert err.value.field == "online.judge"
    train(
        _cfg(tmp_path / "b", "rloo", "rollout.reward=win_rate", "train.max_steps=2"),
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=LengthJudge(),
    )
    rows = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert 0.0 <= rows[0]["rollout/reward"] <= 1.0


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_group_baselines_need_two_samples_per_prompt(tmp_path, algorithm):
    with pytest.raises(ConfigError, match="needs rollout.group_size ≥ 2") as err:
        _cfg(tmp_path, algorithm, "rollout.group_size=1", "rollout.prompts_per_rollout=4")
    assert str(err.value) == (
        f"--set rollout.group_size=1: algorithm '{algorithm}' takes its baseline from the other "
        "samples of the same prompt; it needs rollout.group_size ≥ 2 (got 1)"
    )
    _cfg(tmp_path, "remax", "rollout.group_size=1", "rollout.prompts_per_rollout=4")  # ReMax's baseline is greedy


def test_minibatches_must_tile_the_rollout(tmp_path):
    model, tok = tiny_model()
    with pytest.raises(ConfigError, match="does not split into minibatches") as err:
        train(
            _cfg(tmp_path, "grpo", "train.batch_size=3"),
            records=PROMPTS,
            model=model,
            tokenizer=tok,
            judge=length_reward(),
        )
    assert err.value.field == "rollout.prompts_per_rollout"


def _resume_run(out, callbacks=(), resume=False):
    cfg = _cfg(
        out,
        "ppo",
        "train.batch_size=2",
        "train.grad_accum=2",
        "train.max_steps=6",
        "rollout.epochs=2",
        "train.save_every=1",
        "objective.params={kl_target: 0.5}",
        "rollout.reward_norm=running",
        f"train.resume={str(resume).lower()}",
    )
    model, tok = tiny_model()
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=length_reward(), callbacks=callbacks)
    return model


def test_resumed_mid_rollout_equals_uninterrupted(tmp_path):
    whole = _resume_run(tmp_path / "a")
    with pytest.raises(Killed):
        _resume_run(tmp_path / "b", callbacks=[kill_at(5)])  # rollout 2 has steps 5–8: killed inside it
    resumed = _resume_run(tmp_path / "b", resume=True)
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], abs=1e-6)
    assert [r["rollout/kl_coef"] for r in a] == pytest.approx([r["rollout/kl_coef"] for r in b])
    diff = max((state(whole)[k] - state(resumed)[k]).abs().max().item() for k in state(whole))
    assert diff < 1e-6


def test_a_reward_model_is_the_proxy_and_the_gold_scorer_is_logged_beside_it(tmp_path, tiny_dir):
    from preflab.models import load_reward_model

    tok = tiny_tokenizer()
    rm_dir = tmp_path / "rm"
    load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    model, tok = tiny_model()
    cfg = _cfg(
        tmp_path / "run",
        "rloo",
        "online.num_prompts=4",
        "train.max_steps=2",
        "online.judge=reward_model",
        f"online.judge_args={{model: {rm_dir}}}",
    )
    train(cfg, model=model, tokenizer=tok)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert all(math.isfinite(r["rollout/reward"]) and math.isfinite(r["rollout/gold_reward"]) for r in rows)
    assert rows[0]["rollout/reward"] != rows[0]["rollout/gold_reward"]


def test_remax_advantages_are_rewards_minus_the_greedy_reward_and_both_are_logged():
    sched, _ = _scripted([["a", "bbb"], ["ee", "ffff"]], "remax", 2, greedy_texts=["cc", "g"])
    sched.next_batch()
    adv, mask = sched.data.tensors["advantages"], sched.data.tensors["mask"].bool()
    expected = [0.1 - 0.2, 0.3 - 0.2, 0.2 - 0.1, 0.4 - 0.1]  # len/10 of each sample minus its prompt's greedy one
    for i, a in enumerate(expected):
        assert adv[i][mask[i]].tolist() == pytest.approx([a] * int(mask[i].sum()), abs=1e-6)
    m = sched.metrics()
    assert m["rollout/greedy_reward"] == pytest.approx(0.15)
    per_token = torch.cat([adv[i][mask[i]] for i in range(4)])
    assert m["rollout/advantage_mean"] == pytest.approx(float(per_token.mean()), abs=1e-6)


@pytest.mark.parametrize("with_pass_logprobs", [True, False])
def test_pi_old_comes_with_the_samples_when_the_engine_decoded_with_the_policys_own_weights(with_pass_logprobs):
    """Two minibatches per rollout need log π_old: the sampling pass's per-token log-probs where the sampler
    returns them (no policy scoring pass), else the scoring pass; both give the same values."""
    from dataclasses import replace

    from preflab.generation import SamplingParams, sample
    from preflab.models.logprobs import SequenceScorer

    model, tok = tiny_model(seed=2)
    scorer = SequenceScorer(model).eval()
    calls = []

    def draw(prompts, seed, n, greedy=False):
        params = SamplingParams(max_new_tokens=6, temperature=1.0, seed=seed, n=n, bf16=False)
        out = sample(model, tok, prompts, replace(params, return_token_logprobs=True))
        if not with_pass_logprobs:
            out = [[replace(c, token_logprobs=None) for c in row] for row in out]
        return out

    def score(batch):
        calls.append(1)
        with torch.no_grad():
            return scorer(batch.sequences, per_token=True)[0], None

    sched = RolloutSchedule(
        PROMPTS[:2],
        draw,
        length_reward(),
        Tokenizer(tok),
        4,  # 8 completions, minibatches of 4: π_old is not the update's own forward
        algorithm="rloo",
        params=PolicyGradientParams(beta=0.0),
        score_fn=score,
        ref_fn=lambda b: None,
        group_size=4,
        prompts_per_rollout=2,
        seed=1,
    )
    assert not sched.on_policy
    sched.next_batch()
    assert bool(calls) is not with_pass_logprobs  # the policy was scored only when the samples had no log-probs
    tensors = sched.data.tensors
    calls.clear()
    rescored = sched._score(sched.data.examples)["old_logprobs"]
    mask = tensors["mask"].bool()
    assert calls and mask.sum() > 8
    torch.testing.assert_close(tensors["old_logprobs"][mask], rescored[mask], atol=2e-5, rtol=0)
