"""Online variants of any pair objective: ``algorithm: online_dpo`` with ``objective: {name: ipo}`` is online IPO,
with ``simpo`` online SimPO. The schedule samples K answers a prompt from the policy as it is now and a judge labels
them; each step's loss is the chosen objective on exactly those judged pairs at the step's weights, SimPO and ORPO
load no reference model, and what cannot train on judged pairs is a one-line error naming the config line."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fault_helpers import run_cli
from preflab.config import load_config
from preflab.errors import ConfigError
from preflab.models import tiny_model
from preflab.models.logprobs import SequenceScorer
from preflab.models.policy import NoReference
from preflab.objectives import REGISTRY
from preflab.training import loop, read_metrics, references, train
from test_training_resume import Killed, kill_at
from test_training_utils import LengthJudge, make_cfg, max_abs_diff, state

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}
COMMON = [
    "algorithm=online_dpo",
    "train.batch_size=2",
    "online.max_new_tokens=6",
    "online.temperature=1.0",
    "train.lr=1e-2",
    "train.save_final=false",
]
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "online_ipo.yaml"


class RecordingJudge(LengthJudge):
    def __init__(self) -> None:
        super().__init__(2.0)
        self.calls: list[tuple[str, str, str]] = []

    def compare(self, prompt, a, b) -> float:
        self.calls.append((prompt, a, b))
        return super().compare(prompt, a, b)


@torch.no_grad()
def _score(model, batch) -> torch.Tensor:
    """Summed completion log-probs of every sequence of ``batch`` (chosen of each pair, then rejected)."""
    was_training = model.training
    scorer = SequenceScorer(model)
    scorer.eval()
    out = scorer(batch.sequences).double()
    model.train(was_training)
    return out


def _record_steps(monkeypatch, model) -> list:
    """Per step: the objective, the batch, the policy's log-probs of its sequences at the step's weights (before
    its update) and the run's reference."""
    steps = []
    original = loop.objective_loss

    def spy(spec, params, scorer, reference, batch):
        steps.append((spec.name, batch, _score(model, batch), reference))
        return original(spec, params, scorer, reference, batch)

    monkeypatch.setattr(loop, "objective_loss", spy)
    return steps


def _label(batch, n: int) -> torch.Tensor:
    """P(y_w ≻ y_l) of each pair: 1 for a hard label (soft_labels off), ½ for a tie."""
    return torch.ones(n, dtype=torch.float64) if batch.prob is None else batch.prob.double()


def _hand_ipo(policy, ref, batch, beta: float) -> float:
    """(m − 1/(2β))², m = h(y_w) − h(y_l), in expectation over the label: Azar et al. 2024 with τ = β."""
    n = policy.numel() // 2
    h = policy - ref
    m, target, p = h[:n] - h[n:], 1 / (2 * beta), _label(batch, n)
    return float((p * (m - target) ** 2 + (1 - p) * (m + target) ** 2).mean())


def _hand_simpo(policy, batch, beta: float, gamma: float) -> float:
    """−log σ(β(ā(y_w) − ā(y_l)) − γ), ā = log π / |y|, in expectation over the label: Meng et al. 2024."""
    n = policy.numel() // 2
    mean = policy / batch.sequences.completion_lengths.double()
    z, p = beta * (mean[:n] - mean[n:]), _label(batch, n)
    return float((p * -F.logsigmoid(z - gamma) + (1 - p) * -F.logsigmoid(-z - gamma)).mean())


def _check_judged_pairs(batch, judge_calls, tok, k: int) -> None:
    """The pairs trained on are the samples the judge compared, ordered by its verdict (K = 2), or the best
    against the worst by leave-one-out win rate (K = 3)."""
    seqs = batch.sequences
    n = seqs.num_sequences // 2
    texts = [
        tok.decode(
            [t for t, s in zip(seqs.target_ids.tolist(), seqs.sequence_index.tolist(), strict=True) if s == j],
            skip_special_tokens=True,
        ).strip()  # the sampler's text, which the judge read, is stripped
        for j in range(seqs.num_sequences)
    ]
    if k == 2:
        for g, (_, a, b) in enumerate(judge_calls):  # the longer answer wins (LengthJudge); a tie keeps a first
            chosen, rejected = (a, b) if len(a) >= len(b) else (b, a)
            assert (texts[g], texts[n + g]) == (chosen, rejected)
    else:
        for g in range(n):  # prompt g's judge calls compare samples (0, 1), (0, 2), (1, 2)
            (_, y0, y1), (_, _, y2), _ = judge_calls[3 * g : 3 * g + 3]
            ys = [y0, y1, y2]
            wins = [sum(_p(ys[i], ys[j]) for j in range(3) if j != i) / 2 for i in range(3)]
            best, worst = wins.index(max(wins)), wins.index(min(wins))
            if best == worst:  # every win rate equal: a tie between the first two samples
                best, worst = 0, 1
            assert (texts[g], texts[n + g]) == (ys[best], ys[worst])
            assert batch.winrate[g].tolist() == pytest.approx([wins[best], wins[worst]], abs=1e-6)


def _p(a: str, b: str) -> float:
    return 1.0 / (1.0 + math.exp(-(len(a) - len(b)) / 2.0))  # RecordingJudge's P(a ≻ b)


@pytest.mark.parametrize("k", [2, 3])
def test_online_ipo_loss_is_the_ipo_loss_of_the_judged_pairs(tmp_path, monkeypatch, k):
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)  # π_ref under full fine-tuning: a frozen copy of the initial policy
    steps = _record_steps(monkeypatch, model)
    judge = RecordingJudge()
    beta = 0.5
    cfg = make_cfg(
        tmp_path,
        *COMMON,
        "objective.name=ipo",
        f"objective.params.beta={beta}",
        "train.max_steps=3",
        f"online.samples_per_prompt={k}",
    )
    assert (cfg.algorithm, cfg.objective.name) == ("online_dpo", "ipo")
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [name for name, *_ in steps] == ["ipo"] * 3
    calls_per_step = 2 * k * (k - 1) // 2  # 2 prompts, every pair of a prompt's K samples judged once
    assert len(judge.calls) == 3 * calls_per_step
    margins = []
    for i, (row, (_, batch, policy, reference)) in enumerate(zip(rows, steps, strict=True)):
        ref = _score(initial, batch)
        assert (reference.logprobs(batch).double() - ref).abs().max().item() <= 1e-5  # π_ref stays the initial policy
        _check_judged_pairs(batch, judge.calls[i * calls_per_step : (i + 1) * calls_per_step], tok, k)
        assert row["loss"] == pytest.approx(_hand_ipo(policy, ref, batch, beta), abs=1e-5)
        n = policy.numel() // 2
        margins.append(((policy - ref)[:n] - (policy - ref)[n:]).abs().max().item())
    assert rows[0]["loss"] == pytest.approx(1.0, abs=1e-6)  # π = π_ref at step 1: m = 0, (0 ∓ 1/(2β))² = 1
    assert margins[0] == pytest.approx(0.0, abs=1e-6) and max(margins[1:]) > 1e-2  # later steps are not trivial
    if k == 2:  # on-policy pairs log k1 KL(π‖π_ref): 0 before the first update (K = 3 pairs are judge-picked)
        assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and all("kl" in row for row in rows)


@pytest.mark.parametrize("k", [2, 3])
def test_online_simpo_loads_no_reference_and_its_loss_is_the_simpo_loss(tmp_path, monkeypatch, k):
    def no_reference(*args, **kwargs):
        raise AssertionError("online SimPO built a reference model")

    monkeypatch.setattr(references, "FrozenCopyReference", no_reference)  # full fine-tuning's π_ref
    monkeypatch.setattr(references, "AdapterDisabledReference", no_reference)  # LoRA's π_ref
    spec = REGISTRY["simpo"]
    inputs_seen = []
    original = spec.fn

    def spy(inputs, params):
        inputs_seen.append(copy.copy(inputs))
        return original(inputs, params)

    monkeypatch.setattr(spec, "fn", spy)
    model, tok = tiny_model(**TINY)
    steps = _record_steps(monkeypatch, model)
    judge = RecordingJudge()
    cfg = make_cfg(
        tmp_path,
        *COMMON,
        "objective.name=simpo",
        "objective.params.beta=2.0",
        "objective.params.gamma=0.5",
        "train.max_steps=3",
        f"online.samples_per_prompt={k}",
    )
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=judge)
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [name for name, *_ in steps] == ["simpo"] * 3 and len(inputs_seen) == 3
    calls_per_step = 2 * k * (k - 1) // 2
    for i, (row, (_, batch, policy, reference), inputs) in enumerate(zip(rows, steps, inputs_seen, strict=True)):
        assert isinstance(reference, NoReference)
        assert inputs.ref_chosen is None and inputs.ref_rejected is None  # no π_ref forward pass
        _check_judged_pairs(batch, judge.calls[i * calls_per_step : (i + 1) * calls_per_step], tok, k)
        assert row["loss"] == pytest.approx(_hand_simpo(policy, batch, 2.0, 0.5), abs=1e-5)
        assert "kl" not in row  # no reference, no KL(π‖π_ref) estimate
    assert rows[-1]["loss"] != pytest.approx(rows[0]["loss"], abs=1e-4)


_PAIRS = "online_dpo, dpo, cdpo, rdpo, ipo, hinge, rpo, simpo, orpo"
_HEAD = (
    f"field 'objective.name': algorithm 'online_dpo' trains one of the pair objectives {_PAIRS} on pairs sampled "
    "from the current policy and judged at every step; "
)


@pytest.mark.parametrize(
    ("algorithm", "objective", "message"),
    [
        (
            "online_dpo",
            "kto",
            _HEAD + "objective 'kto' is the loss of algorithm 'kto', which trains on a fixed dataset of single "
            "completions labelled desirable / undesirable against the initial policy π_ref, fixed for the whole run",
        ),
        (
            "online_dpo",
            "lipo",
            _HEAD + "objective 'lipo' is the loss of algorithm 'lipo', which trains on a fixed dataset of rankings",
        ),
        ("online_dpo", "pro", _HEAD + "objective 'pro' is the loss of algorithm 'pro', which trains on a fixed"),
        (
            "online_dpo",
            "sppo",
            _HEAD + "objective 'sppo' is the loss of algorithm 'sppo', which trains on rounds: sample from π_t, "
            "judge, then fit the round's loss against the previous round's policy π_t",
        ),
        (
            "online_dpo",
            "ppo",
            _HEAD + "objective 'ppo' is the loss of algorithm 'ppo', which trains on G completions per prompt",
        ),
        ("online_dpo", "nash_md", _HEAD + "objective 'nash_md' is the loss of algorithm 'nash_md'"),
        ("online_dpo", "xpo", _HEAD + "objective 'xpo' is the loss of algorithm 'xpo'"),
        ("online_dpo", "bt_reward", _HEAD + "objective 'bt_reward' trains a reward model (algorithm 'bt_reward')"),
        ("online_dpo", "hl_gauss", _HEAD + "objective 'hl_gauss' is no algorithm's loss"),
        (
            "xpo",
            "ipo",
            "field 'objective.name': objective.name 'ipo' contradicts algorithm 'xpo', whose objective is 'xpo'",
        ),
        (
            "sppo",
            "ipo",
            "field 'objective.name': objective.name 'ipo' contradicts algorithm 'sppo', whose objective is 'sppo'",
        ),
    ],
)
def test_an_objective_the_online_schedule_cannot_train_is_a_one_line_error_naming_the_line(
    tmp_path, monkeypatch, capsys, algorithm, objective, message
):
    path = tmp_path / "run.yaml"
    path.write_text(f"seed: 0\nalgorithm: {algorithm}\nobjective:\n  name: {objective}\ntrain:\n  max_steps: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}, line 4, {message}"), str(err.value)
    assert "\n" not in str(err.value)
    code, line = run_cli(monkeypatch, capsys, "train", str(path))
    assert code == 2 and line == f"error: {err.value}"


def test_every_pair_objective_of_the_table_runs_online_with_its_own_reference_schedule():
    expected = {"dpo": "fixed", "cdpo": "fixed", "rdpo": "fixed", "ipo": "fixed", "hinge": "fixed", "rpo": "fixed"}
    expected |= {"simpo": "none", "orpo": "none"}
    from preflab.training.lm_algorithms import configured_algorithm
    from preflab.training.resolve import reference_mode

    for name, reference in expected.items():
        cfg = load_config(None, ["algorithm=online_dpo", f"objective.name={name}", "train.max_steps=1"])
        algo = configured_algorithm(cfg)
        assert (cfg.algorithm, algo.objective, algo.data, algo.reference) == (
            "online_dpo",
            name,
            "online_pairs",
            reference,
        )
        mode = reference_mode("auto", REGISTRY[name], False, "online")
        assert mode == ("none" if reference == "none" else "frozen_copy")


def _resumable(out, *, callbacks=(), resume=False):
    cfg = make_cfg(
        out,
        *COMMON,
        "objective.name=simpo",
        "online.samples_per_prompt=3",
        "train.max_steps=6",
        "train.save_every=2",
        "lora.enabled=true",
        "lora.r=4",
        "lora.dropout=0.1",
        f"train.resume={str(resume).lower()}",
    )
    model, tok = tiny_model(**TINY)
    result = train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge(), callbacks=callbacks)
    return model, result


def test_online_simpo_resumed_mid_run_equals_an_uninterrupted_run(tmp_path):
    whole, _ = _resumable(tmp_path / "a")
    with pytest.raises(Killed):  # the last checkpoint is step 4
        _resumable(tmp_path / "b", callbacks=[kill_at(5)])
    resumed, result = _resumable(tmp_path / "b", resume=True)
    assert result.resumed_from == 4 and result.steps == 6
    assert max_abs_diff(state(whole), state(resumed)) <= 1e-6
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["online/winrate_chosen"] == pytest.approx(ra["online/winrate_chosen"], abs=1e-9)  # same samples


def test_the_online_ipo_recipe_shrinks_with_set_and_trains_on_a_tiny_model(tmp_path, tiny_dir, monkeypatch, capsys):
    from fault_helpers import run_entry

    run = tmp_path / "run"
    flags = [
        f"model.name_or_path={tiny_dir}",
        f"output_dir={run}",
        "train.max_steps=2",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.bf16=false",
        "train.progress=false",
        "train.save_every=0",
        "online.num_prompts=4",
        "online.max_new_tokens=4",
        "online.samples_per_prompt=3",
    ]
    code, _, err = run_entry(["train", str(RECIPE), *[a for f in flags for a in ("--set", f)]], monkeypatch, capsys)
    assert not code, err
    rows = read_metrics(run / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2]
    resolved = load_config(run / "config.yaml")
    assert (resolved.algorithm, resolved.objective.name, resolved.online.samples_per_prompt) == ("online_dpo", "ipo", 3)
    beta = resolved.objective.params["beta"]
    # LoRA adapters start at zero: π = π_ref at step 1, m = 0, and the IPO loss is (1/(2β))² (25 at β = 0.1)
    assert rows[0]["loss"] == pytest.approx((1 / (2 * beta)) ** 2, rel=1e-5)
    assert all(0.0 <= r["online/winrate_chosen"] <= 1.0 and 0.0 <= r["gold_reward"] <= 1.0 for r in rows)
    assert (run / "final").is_dir()
