"""The iterative schedule on language models: rounds of sample K from π_t → judge every pair → train against π_t
(iterative DPO, SPPO). The reference moves exactly as prescribed, SPPO gets the judge's estimated win rates, and
a run resumed mid-round equals an uninterrupted one."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from preflab.data.tokenize import Tokenizer
from preflab.generation.sampler import Completion
from preflab.models import tiny_model, tiny_tokenizer
from preflab.models.logprobs import SequenceScorer
from preflab.objectives import REGISTRY
from preflab.training import read_metrics, train
from preflab.training.iterative import IterativeSchedule, PreviousIterateReference
from preflab.training.rounds import build_round, win_rates
from preflab.training.step import pair_inputs
from test_training_resume import Killed, kill_at
from test_training_utils import LengthJudge, make_cfg, max_abs_diff, state

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _completion(tok, text):
    return Completion(
        text=text, token_ids=tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id], finish_reason="stop"
    )


def test_win_rates_leave_each_sample_out_of_its_own_estimate():
    pref = torch.tensor([[0.5, 0.9, 0.6], [0.1, 0.5, 0.3], [0.4, 0.7, 0.5]], dtype=torch.float64)
    assert win_rates(pref).tolist() == pytest.approx([(0.9 + 0.6) / 2, (0.1 + 0.3) / 2, (0.4 + 0.7) / 2], abs=1e-15)


def test_a_round_pairs_best_against_worst_with_the_judges_win_rates():
    tok = tiny_tokenizer()
    texts = ["ab", "abcdef", "a"]  # lengths 2, 6, 1; LengthJudge(scale=1): P(a ≻ b) = σ(len a − len b)
    data = build_round(["q"], [[_completion(tok, t) for t in texts]], LengthJudge(scale=1.0), Tokenizer(tok))
    w = [(_sig(2 - 6) + _sig(2 - 1)) / 2, (_sig(6 - 2) + _sig(6 - 1)) / 2, (_sig(1 - 2) + _sig(1 - 6)) / 2]
    (ex,) = data.examples
    assert [tok.decode(c[:-1]) for c in ex.completions] == ["abcdef", "a"]  # best vs worst by win rate
    assert ex.prob is None  # a hard label unless online.soft_labels
    assert data.winrates.tolist() == [pytest.approx([w[1], w[2]], abs=1e-7)]
    assert data.metrics["iterative/winrate_chosen"] == pytest.approx(w[1], abs=1e-7)

    every = build_round(
        ["q"],
        [[_completion(tok, t) for t in texts]],
        LengthJudge(scale=1.0),
        Tokenizer(tok),
        rule="all",
        soft_labels=True,
    )
    got = {(tok.decode(e.completions[0][:-1]), tok.decode(e.completions[1][:-1])): e.prob for e in every.examples}
    assert got == pytest.approx({("abcdef", "ab"): _sig(4), ("ab", "a"): _sig(1), ("abcdef", "a"): _sig(5)})


def _tied_judge_round():
    tok = tiny_tokenizer()
    data = build_round(["q"], [[_completion(tok, t) for t in ("xy", "zw", "uv")]], LengthJudge(), Tokenizer(tok))
    return data.examples[0].prob, data.winrates.tolist(), data.metrics["iterative/ties"]


def test_equal_win_rates_are_a_tie_never_a_coin_flip():
    assert _tied_judge_round() == (0.5, [[0.5, 0.5]], 1.0)


def test_sppo_gets_the_judges_estimated_win_rates_as_its_soft_labels():
    """SPPO's targets P̂(y ≻ π_t) reach the objective as the judge's win rates over the K samples (hand-computed)."""
    tok = tiny_tokenizer()
    answers = {p: [p[:n] for n in (3, 9, 5, 1)] for p in PROMPTS}  # lengths 3, 9, 5, 1 per prompt

    def sample(prompts, seed, k):
        return [[_completion(tok, t) for t in answers[p][:k]] for p in prompts]

    schedule = IterativeSchedule(
        PROMPTS, sample, LengthJudge(scale=2.0), Tokenizer(tok), 4, rounds=1, samples_per_prompt=4
    )
    batch = schedule.next_batch()
    lengths = [3, 9, 5, 1]
    w = [sum(_sig((a - b) / 2.0) for b in lengths if b != a) / 3 for a in lengths]
    assert batch.winrate.tolist() == [pytest.approx([w[1], w[3]], abs=1e-7)] * 4  # 9 chars beat 1 char
    policy = torch.randn(8, dtype=torch.float32)
    ref = torch.randn(8, dtype=torch.float32)
    inputs = pair_inputs(batch, policy, ref)
    assert torch.equal(inputs.chosen_winrate, batch.winrate[:, 0])
    assert torch.equal(inputs.rejected_winrate, batch.winrate[:, 1])
    loss, _ = REGISTRY["sppo"](inputs, REGISTRY["sppo"].make_params(beta=0.5))
    h = policy - ref  # SPPO: Σ over the pair of (h − η(P̂ − ½))², η = 1/β = 2
    expected = ((h[:4] - 2 * (w[1] - 0.5)) ** 2 + (h[4:] - 2 * (w[3] - 0.5)) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


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
        seen.append(inputs)
        return original(inputs, params)

    monkeypatch.setattr(spec, "fn", spy)
    return seen


def test_sppo_in_the_loop_trains_on_the_win_rates_of_its_own_judged_samples(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "sppo")
    judge = RecordingJudge(scale=2.0)
    cfg = make_cfg(
        tmp_path,
        "algorithm=sppo",
        "iterative.rounds=1",
        "iterative.samples_per_prompt=3",
        "train.batch_size=4",
        "online.max_new_tokens=8",
        "online.temperature=1.0",
        "train.lr=1e-3",
        "train.save_final=false",
    )
    model, tok = tiny_model(**TINY)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    # K = 3: the judge saw (y0, y1), (y0, y2), (y1, y2) per prompt; win rates by hand from the texts it saw
    expected = []
    for g in range(len(PROMPTS)):
        (_, y0, y1), (_, _, y2), _ = judge.calls[3 * g : 3 * g + 3]
        lengths = [len(y) for y in (y0, y1, y2)]
        w = [sum(_sig((lengths[k] - lengths[j]) / 2.0) for j in range(3) if j != k) / 2 for k in range(3)]
        expected.append((max(w), min(w)))
    (inputs,) = seen  # one step: the round's 4 pairs in one batch
    got = list(zip(inputs.chosen_winrate.tolist(), inputs.rejected_winrate.tolist(), strict=True))
    assert [v for pair in sorted(got) for v in pair] == pytest.approx(
        [v for pair in sorted(expected) for v in pair], abs=1e-7
    )


def _reference_spy(monkeypatch) -> list:
    """Every training batch and the reference log-probs the objective got for it."""
    from preflab.training import loop

    seen = []
    original = loop.objective_loss

    def spy(spec, params, scorer, reference, batch):
        anchor = reference.anchor(batch)
        seen.append((batch, reference.logprobs(batch).detach().clone(), anchor))
        return original(spec, params, scorer, reference, batch)

    monkeypatch.setattr(loop, "objective_loss", spy)
    return seen


@torch.no_grad()
def _score(model, batch) -> torch.Tensor:
    scorer = SequenceScorer(model)
    scorer.eval()
    return scorer(batch.sequences).float()


def _snapshot_at(steps: set[int], model, out: dict):
    def callback(step: int, _metrics: dict) -> None:
        if step in steps:
            out[step] = copy.deepcopy(model)

    return callback


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_reference_of_each_round_is_the_policy_at_the_end_of_the_previous_round(tmp_path, monkeypatch, lora):
    seen = _reference_spy(monkeypatch)
    extra = ["lora.enabled=true", "lora.r=4", "lora.dropout=0.1"] if lora else []
    cfg = make_cfg(
        tmp_path,
        "algorithm=iterative_dpo",
        "iterative.rounds=3",
        "iterative.samples_per_prompt=3",
        "iterative.steps_per_round=2",
        "train.batch_size=2",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "train.lr=1e-2",
        "train.save_final=false",
        *extra,
    )
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    snapshots: dict = {}
    train(
        cfg,
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=LengthJudge(),
        callbacks=[_snapshot_at({2, 4}, model, snapshots)],
    )
    assert len(seen) == 6
    for step, (batch, ref, _) in enumerate(seen, start=1):
        pi_t = initial if step <= 2 else snapshots[2 * ((step - 1) // 2)]
        assert (ref - _score(pi_t, batch)).abs().max().item() <= 1e-6, step
    # the policy did move: round 3's reference is not π_0
    assert (seen[-1][1] - _score(initial, seen[-1][0])).abs().max().item() > 1e-3
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [r["iterative/round"] for r in rows] == [1, 1, 2, 2, 3, 3]
    if not lora:  # each round's first step starts at π = π_t: the DPO loss is log 2 (no dropout in the policy)
        assert [rows[i]["loss"] for i in (0, 2, 4)] == pytest.approx([math.log(2)] * 3, abs=1e-5)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_inpo_regresses_towards_pi_ref_and_anchors_at_pi_t(tmp_path, monkeypatch, lora):
    """INPO's h(y) = log π − ητ log π_ref − (1 − ητ) log π_t: ``ref_*`` stays π_0, ``anchor_*`` is π_t."""
    seen = _reference_spy(monkeypatch)
    extra = ["lora.enabled=true", "lora.r=4"] if lora else []
    cfg = make_cfg(
        tmp_path,
        "algorithm=inpo",
        "iterative.rounds=2",
        "iterative.samples_per_prompt=3",
        "iterative.steps_per_round=2",
        "train.batch_size=2",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "train.lr=1e-2",
        "train.save_final=false",
        *extra,
    )
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    snapshots: dict = {}
    train(
        cfg,
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=LengthJudge(),
        callbacks=[_snapshot_at({2}, model, snapshots)],
    )
    assert len(seen) == 4
    for step, (batch, ref, anchor) in enumerate(seen, start=1):
        assert (ref - _score(initial, batch)).abs().max().item() <= 1e-6, step
        assert (anchor - _score(initial if step <= 2 else snapshots[2], batch)).abs().max().item() <= 1e-6, step
    assert (seen[-1][2] - seen[-1][1]).abs().max().item() > 1e-3  # round 2: π_t is not π_0


def test_dno_gets_the_round_win_rates_as_its_targets(tmp_path, monkeypatch):
    seen = _spy_objective(monkeypatch, "dno")
    cfg = make_cfg(
        tmp_path,
        "algorithm=dno",
        "iterative.rounds=1",
        "iterative.samples_per_prompt=3",
        "train.batch_size=4",
        "online.max_new_tokens=8",
        "online.temperature=1.0",
        "train.lr=1e-3",
        "train.save_final=false",
    )
    model, tok = tiny_model(**TINY)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge(scale=2.0))
    (inputs,) = seen
    assert torch.equal(inputs.win_chosen, inputs.chosen_winrate) and torch.equal(
        inputs.win_rejected, inputs.rejected_winrate
    )
    assert bool((inputs.win_chosen >= inputs.win_rejected).all())  # best against worst
    assert torch.equal(inputs.anchor_chosen, inputs.ref_chosen)  # round 1: π_t = π_0


def test_iterative_dpo_against_the_initial_policy_keeps_pi_0(tmp_path, monkeypatch):
    seen = _reference_spy(monkeypatch)
    cfg = make_cfg(
        tmp_path,
        "algorithm=iterative_dpo",
        "iterative.reference=initial",
        "iterative.rounds=2",
        "iterative.samples_per_prompt=2",
        "train.batch_size=2",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "train.lr=1e-2",
        "lora.enabled=true",
        "lora.r=4",
        "train.save_final=false",
    )
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge())
    assert len(seen) == 4  # 4 pairs a round, 2 per step
    for batch, ref, _ in seen:
        assert (ref - _score(initial, batch)).abs().max().item() <= 1e-6
    batch, _, _ = seen[-1]
    assert (_score(model, batch) - _score(initial, batch)).abs().max().item() > 1e-3  # the policy moved


def _resumable(out, *, algorithm="sppo", callbacks=(), resume=False):
    cfg = make_cfg(
        out,
        f"algorithm={algorithm}",
        "iterative.rounds=3",
        "iterative.samples_per_prompt=3",
        "iterative.steps_per_round=3",
        "train.batch_size=2",
        "online.max_new_tokens=6",
        "online.temperature=1.0",
        "train.lr=3e-3",
        "train.save_every=2",
        "lora.enabled=true",
        "lora.r=4",
        "lora.dropout=0.1",
        f"train.resume={str(resume).lower()}",
        "train.save_final=false",
    )
    model, tok = tiny_model(**TINY)
    result = train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge(), callbacks=callbacks)
    return model, result


@pytest.mark.parametrize("algorithm", ["sppo", "inpo"])
def test_a_run_resumed_mid_round_equals_an_uninterrupted_one(tmp_path, algorithm):
    whole, _ = _resumable(tmp_path / "a", algorithm=algorithm)
    with pytest.raises(Killed):  # killed in round 2 (steps 4-6); the last checkpoint, step 4, is mid-round
        _resumable(tmp_path / "b", algorithm=algorithm, callbacks=[kill_at(5)])
    resumed, result = _resumable(tmp_path / "b", algorithm=algorithm, resume=True)
    assert result.resumed_from == 4 and result.steps == 9
    assert max_abs_diff(state(whole), state(resumed)) <= 1e-6
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["step"] for r in b] == list(range(1, 10))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["iterative/winrate_chosen"] == ra["iterative/winrate_chosen"]


def test_the_round_is_in_the_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from preflab.training.checkpoint import latest_checkpoint

    _resumable(tmp_path)
    last = latest_checkpoint(tmp_path / "checkpoints")
    tensors = load_file(str(last / "schedule.safetensors"))
    assert sorted(tensors) == ["ids", "lengths", "prob", "reference", "winrates"]
    assert tensors["reference"].shape == (4, 2) and tensors["winrates"].shape == (4, 2)


def test_previous_iterate_reference_is_the_rounds_cache():
    ref = PreviousIterateReference()
    assert ref.mode == "previous_iterate" and ref.table.shape == (0, 2)
