"""Nash-MD, Nash-MP, SPO and XPO on language models (training/selfplay.py, the online schedule's XPO and K > 2
modes): each schedule runs; its rewards are the judge's verdicts on the samples it drew; the reference and the
anchor move exactly as the method prescribes; a run resumed mid-round equals an uninterrupted one."""

from __future__ import annotations

import copy
import math
import sys

import pytest
import torch

from preflab.config import load_config
from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError
from preflab.generation import mixture
from preflab.generation.sampler import Completion
from preflab.models import tiny_model, tiny_tokenizer
from preflab.models.logprobs import SequenceScorer
from preflab.objectives import REGISTRY
from preflab.training import read_metrics, train
from preflab.training.online import OnlineSchedule
from preflab.training.selfplay import SelfPlaySchedule, Snapshots
from test_training_resume import Killed, kill_at
from test_training_utils import LengthJudge, make_cfg, max_abs_diff, state

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}
COMMON = [
    "train.batch_size=2",
    "online.max_new_tokens=6",
    "online.temperature=1.0",
    "train.lr=1e-2",
    "train.save_final=false",
    "iterative.samples_per_prompt=3",
]


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class RecordingJudge(LengthJudge):
    def __init__(self, scale: float = 2.0):
        super().__init__(scale)
        self.calls: list[tuple[str, str, str]] = []

    def compare(self, prompt, a, b) -> float:
        self.calls.append((prompt, a, b))
        return super().compare(prompt, a, b)


def _spy_objective(monkeypatch, name: str) -> list:
    seen = []
    spec = REGISTRY[name]
    original = spec.fn

    def spy(inputs, params):
        seen.append(copy.copy(inputs))
        return original(inputs, params)

    monkeypatch.setattr(spec, "fn", spy)
    return seen


@torch.no_grad()
def _score(model, batch) -> torch.Tensor:
    scorer = SequenceScorer(model)
    scorer.eval()
    return scorer(batch.sequences).float()


def _batches(monkeypatch) -> list:
    from preflab.training import loop

    seen = []
    original = loop.objective_loss

    def spy(spec, params, scorer, reference, batch):
        seen.append(batch)
        return original(spec, params, scorer, reference, batch)

    monkeypatch.setattr(loop, "objective_loss", spy)
    return seen


def _completion(tok, text):
    return Completion(text, tok(text, add_special_tokens=False)["input_ids"], "length")


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_nash_md_rewards_each_sample_against_a_mixture_opponent_and_keeps_pi_ref(tmp_path, monkeypatch, lora):
    seen = _spy_objective(monkeypatch, "nash_md")
    batches = _batches(monkeypatch)
    mixes = []
    original = mixture.mixture_decode

    models = []

    def spy(*args, **kwargs):
        mixes.append(kwargs["mix"])
        models.append((args[0], args[1], kwargs.get("reference_context")))
        return original(*args, **kwargs)

    monkeypatch.setattr(mixture, "mixture_decode", spy)
    judge = RecordingJudge()
    extra = ["lora.enabled=true", "lora.r=4"] if lora else []
    cfg = make_cfg(
        tmp_path,
        "algorithm=nash_md",
        "iterative.rounds=2",
        "iterative.steps_per_round=2",
        "iterative.mixture_coef=0.25",
        *COMMON,
        *extra,
    )
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    assert len(seen) == 4 and mixes == [0.25] * 4  # one mixture draw of the opponents per step
    for policy, reference, context in models:  # the policy being trained, mixed with π_ref
        if lora:  # π_ref = the same model with its adapters off
            assert policy is reference and context is not None and policy.get_base_model() is model
        else:  # π_ref = the frozen copy
            assert policy is model and reference is not model and context is None
            assert max_abs_diff(state(reference), state(initial)) == 0
    for step, (inputs, batch) in enumerate(zip(seen, batches, strict=True)):
        calls = judge.calls[6 * step : 6 * step + 6]  # 2 prompts x K = 3 samples, each against its opponent
        # sample k of prompt g is sequence k·G + g; the judge saw prompt g's samples in a row
        expected = [
            _sig((len(calls[3 * g + k][1]) - len(calls[3 * g + k][2])) / 2.0) for k in range(3) for g in range(2)
        ]
        assert inputs.reward.tolist() == pytest.approx(expected, abs=1e-6)
        assert inputs.group.tolist() == [0, 1, 0, 1, 0, 1]
        assert (
            len({calls[3 * g][2] for g in range(2) for _ in range(3)} | {c[2] for c in calls}) <= 2
        )  # one opponent a prompt
        assert (inputs.ref - _score(initial, batch)).abs().max().item() <= 1e-6  # π_ref fixed: the initial policy
    assert (_score(model, batches[-1]) - _score(initial, batches[-1])).abs().max().item() > 1e-3


def test_nash_mp_plays_pi_k_then_pi_k_half_from_the_snapshot_pi_k(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "nash_mp")
    batches = _batches(monkeypatch)
    used = []
    original = Snapshots.using

    def spy(self, name):
        used.append(name)
        return original(self, name)

    monkeypatch.setattr(Snapshots, "using", spy)
    cfg = make_cfg(tmp_path, "algorithm=nash_mp", "iterative.rounds=2", "iterative.steps_per_round=2", *COMMON)
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    ends: dict = {}
    train(
        cfg,
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=LengthJudge(),
        callbacks=[lambda s, _m: ends.__setitem__(s, copy.deepcopy(model))],
    )
    # per step: the opponent's sampler, then the anchor's scorer (always π^k)
    assert used == ["k", "k", "half", "k"] * 2
    pi_k = {1: initial, 2: initial, 3: ends[2], 4: ends[2]}
    for step, (inputs, batch) in enumerate(zip(seen, batches, strict=True), start=1):
        assert (inputs.anchor - _score(pi_k[step], batch)).abs().max().item() <= 1e-5, step
        assert (inputs.ref - _score(initial, batch)).abs().max().item() <= 1e-6, step
        # both half-steps start at π^k: the update half restarts from it (mirror prox)
        assert (inputs.policy - inputs.anchor).abs().max().item() <= 1e-5, step
    assert (seen[2].anchor - seen[2].ref).abs().max().item() > 1e-3  # round 2: π^k is not π_ref
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [r["selfplay/phase"] for r in rows] == [0, 1, 0, 1]
    assert max_abs_diff(state(ends[1]), state(initial)) > 1e-4  # the extrapolation did move the weights


def test_spo_rewards_each_sample_with_the_fraction_of_the_others_it_beats(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "spo")
    judge = RecordingJudge()
    cfg = make_cfg(tmp_path, "algorithm=spo", "iterative.rounds=1", "iterative.steps_per_round=1", *COMMON)
    model, tok = tiny_model(**TINY)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    (inputs,) = seen
    assert inputs.ref is None and len(judge.calls) == 2 * 3  # every pair of the K = 3 samples of 2 prompts
    expected = {}
    for g in range(2):
        (_, y0, y1), (_, _, y2), _ = judge.calls[3 * g : 3 * g + 3]
        n = [len(y) for y in (y0, y1, y2)]
        for k in range(3):
            expected[k * 2 + g] = sum(_sig((n[k] - n[j]) / 2.0) for j in range(3) if j != k) / 2
    assert inputs.reward.tolist() == pytest.approx([expected[i] for i in range(6)], abs=1e-6)


def test_xpo_pairs_a_policy_sample_with_a_pi_ref_sample_and_explores_on_the_latter():
    tok = tiny_tokenizer()
    ref_texts = ["a much longer reference answer", "r"]

    def sample(prompts, seed, n=2):
        return [[_completion(tok, "mid answer")] * n for _ in prompts]

    def explore(prompts, seed):
        return [_completion(tok, ref_texts[i]) for i in range(len(prompts))]

    schedule = OnlineSchedule(
        PROMPTS[:2], sample, LengthJudge(), Tokenizer(tok), batch_size=2, seed=0, explore_fn=explore
    )
    schedule.stream.rows = lambda start, count: [0, 1]
    batch = schedule.next_batch()
    # prompt 0: the π_ref answer is longer, so chosen (slot 0); prompt 1: it loses (slot 1)
    assert batch.meta["explore_slot"].tolist() == [0, 1]
    from preflab.training.step import xpo_inputs

    policy = torch.tensor([-1.0, -2.0, -3.0, -4.0])  # chosen 0, chosen 1, rejected 0, rejected 1
    inputs = xpo_inputs(batch, policy, torch.zeros(4))
    assert inputs.policy_explore.tolist() == [-1.0, -4.0]
    loss, metrics = REGISTRY["xpo"](inputs, REGISTRY["xpo"].make_params(beta=0.1, alpha=0.5))
    assert metrics["loss/xpo"].item() == pytest.approx(0.5 * (-1.0 - 4.0) / 2)


def test_xpo_trains_with_pi_ref_samples_from_the_reference(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "xpo")
    mixes = []
    original = mixture.mixture_decode

    def spy(*args, **kwargs):
        mixes.append(kwargs["mix"])
        return original(*args, **kwargs)

    monkeypatch.setattr(mixture, "mixture_decode", spy)
    cfg = make_cfg(
        tmp_path,
        "algorithm=xpo",
        "train.max_steps=2",
        "objective.params.alpha=0.1",
        "lora.enabled=true",
        "lora.r=4",
        *COMMON,
    )
    model, tok = tiny_model(**TINY)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge())
    assert mixes == [1.0, 1.0] and len(seen) == 2
    for inputs in seen:
        assert inputs.policy_explore.shape == (2,)


def test_online_dpo_with_three_samples_trains_best_against_worst(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "online_dpo")
    judge = RecordingJudge()
    cfg = make_cfg(tmp_path, "algorithm=online_dpo", "train.max_steps=1", "online.samples_per_prompt=3", *COMMON)
    model, tok = tiny_model(**TINY)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    (inputs,) = seen
    assert len(judge.calls) == 6 and inputs.policy_chosen.shape == (2,)
    assert bool((inputs.chosen_winrate >= inputs.rejected_winrate).all())


def _resumable(out, algorithm, *, callbacks=(), resume=False):
    cfg = make_cfg(
        out,
        f"algorithm={algorithm}",
        "iterative.rounds=2",
        "iterative.steps_per_round=3",
        "train.save_every=2",
        "lora.enabled=true",
        "lora.r=4",
        "lora.dropout=0.1",
        f"train.resume={str(resume).lower()}",
        *COMMON,
    )
    model, tok = tiny_model(**TINY)
    result = train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge(), callbacks=callbacks)
    return model, result


@pytest.mark.parametrize("algorithm", ["nash_md", "nash_mp"])
def test_a_self_play_run_resumed_mid_round_equals_an_uninterrupted_one(tmp_path, algorithm):
    whole, _ = _resumable(tmp_path / "a", algorithm)
    with pytest.raises(Killed):  # the last checkpoint, step 4, is in round 2's first (extrapolation) half
        _resumable(tmp_path / "b", algorithm, callbacks=[kill_at(5)])
    resumed, result = _resumable(tmp_path / "b", algorithm, resume=True)
    assert result.resumed_from == 4 and result.steps == 6
    assert max_abs_diff(state(whole), state(resumed)) <= 1e-6
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["selfplay/reward"] == ra["selfplay/reward"]


def test_nash_mp_snapshots_are_in_the_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from preflab.training.checkpoint import latest_checkpoint

    _resumable(tmp_path, "nash_mp")
    tensors = load_file(str(latest_checkpoint(tmp_path / "checkpoints") / "schedule.safetensors"))
    names = {key.split("/")[1] for key in tensors}
    assert names == {"k", "half"} and all("lora_" in key for key in tensors)


def test_the_schedule_checks_its_game():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="only Nash-MD"):
        SelfPlaySchedule(
            PROMPTS,
            lambda *a: [],
            LengthJudge(),
            Tokenizer(tok),
            2,
            game="spo",
            rounds=1,
            samples_per_prompt=2,
            opponent_fn=lambda *a: [],
        )
    with pytest.raises(ValueError, match="unknown self-play game"):
        SelfPlaySchedule(
            PROMPTS, lambda *a: [], LengthJudge(), Tokenizer(tok), 2, game="ppo", rounds=1, samples_per_prompt=2
        )


@pytest.mark.parametrize(
    ("yaml_text", "line", "message"),
    [
        (
            "algorithm: nash_md\ndata:\n  path: prefs.jsonl\n",
            3,
            "field 'data.path': algorithm 'nash_md' trains on samples from the policy, rewarded by a pairwise judge, "
            "policy-gradient steps, not on an offline dataset",
        ),
        (
            "algorithm: nash_mp\niterative:\n  steps_per_round: 1\n",
            3,
            "field 'iterative.steps_per_round': algorithm 'nash_mp' splits each round into an extrapolation and an "
            "update half",
        ),
        (
            "algorithm: spo\nobjective:\n  params:\n    beta: 0.1\n",
            3,
            "field 'objective.params': algorithm 'spo' runs on language models without a reference policy",
        ),
        (
            "algorithm: nash_md\ntrain:\n  max_steps: 3\n",
            3,
            "field 'train.max_steps': algorithm 'nash_md' trains iterative.rounds × iterative.steps_per_round steps",
        ),
        ("algorithm: xpo\nreference:\n  mode: cached\n", 3, "field 'reference.mode'"),
        (
            "algorithm: xpo\nonline:\n  samples_per_prompt: 4\n",
            3,
            "field 'online.samples_per_prompt': algorithm 'xpo' pairs one answer of the policy with one of π_ref",
        ),
    ],
)
def test_a_self_play_config_the_trainer_cannot_run_is_a_one_line_error(tmp_path, yaml_text, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}, line {line}, {message}"), str(err)
        assert "\n" not in str(err)
    else:  # reference.mode is checked when the run is built
        from preflab.training.build import build_parts

        assert "cached" in yaml_text
        cfg = load_config(path, [f"output_dir={tmp_path / 'out'}"])
        model, tok = tiny_model(**TINY)
        with pytest.raises(ConfigError, match="field 'reference.mode': an online schedule samples"):
            build_parts(cfg, judge=LengthJudge(), records=PROMPTS, model=model, tokenizer=tok)


def test_train_cli_with_an_offline_dataset_for_nash_md_exits_2(tmp_path, monkeypatch, capsys):
    from preflab.cli import main

    cfg = tmp_path / "run.yaml"
    cfg.write_text("seed: 0\nalgorithm: nash_md\ndata:\n  path: prefs.jsonl\n")
    monkeypatch.setattr(sys, "argv", ["preflab", "train", str(cfg)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {cfg}, line 4, field 'data.path': algorithm 'nash_md' trains on")
        and err.count("\n") == 1
    )


@pytest.mark.parametrize("name", ["nash_md", "nash_mp", "spo", "xpo"])
def test_the_recipe_runs_as_shipped_through_the_cli_shrunk_by_set(name, tmp_path, tiny_dir, monkeypatch, capsys):
    """`preflab train recipes/NAME.yaml --set ...`: the shipped judge (the noisy annotator pool on the default
    suite's prompts), LoRA and sampling settings, on the tiny model and a few steps."""
    from pathlib import Path

    from preflab.cli import main

    recipe = Path(__file__).resolve().parent.parent / "recipes" / f"{name}.yaml"
    shrink = (
        ["train.max_steps=2"]
        if name == "xpo"
        else ["iterative.rounds=1", "iterative.prompts_per_round=4", "iterative.steps_per_round=2"]
    )
    sets = [
        f"model.name_or_path={tiny_dir}",
        f"output_dir={tmp_path / 'run'}",
        "online.max_new_tokens=6",
        "online.num_prompts=8",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.progress=false",
        "train.save_every=0",
        "train.save_final=false",
        *shrink,
    ]
    monkeypatch.setattr(sys, "argv", ["preflab", "train", str(recipe), *[a for s in sets for a in ("--set", s)]])
    try:
        main()
    except SystemExit as done:
        assert done.code in (0, None), capsys.readouterr().err
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows)
