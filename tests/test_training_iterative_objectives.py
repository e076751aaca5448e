"""Iterative variants of any pair objective: ``algorithm: iterative_dpo`` with ``objective: {name: ipo}`` is iterative
IPO, with ``simpo`` iterative SimPO. The rounds are iterative DPO's (K samples per prompt from π_t, every pair judged,
best against worst); each step's loss is the chosen objective on the round's pairs against π_t (IPO) or against no
reference at all (SimPO, ORPO: none is built); a run resumed mid-round equals an uninterrupted one, and a
combination the schedule cannot train is a one-line error naming the config line."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest

from fault_helpers import run_cli, run_entry
from preflab.config import load_config
from preflab.errors import ConfigError
from preflab.models import tiny_model
from preflab.models.policy import NoReference
from preflab.objectives import REGISTRY
from preflab.training import build, read_metrics, references, schedule_setup, train
from test_training_online_objectives import _hand_ipo, _hand_simpo, _record_steps, _score
from test_training_resume import Killed, kill_at
from test_training_utils import LengthJudge, make_cfg, max_abs_diff, state

PROMPTS = ["Name a fruit.", "Name a colour.", "Name a river.", "Say hello."]
TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}
COMMON = [
    "algorithm=iterative_dpo",
    "iterative.samples_per_prompt=3",
    "iterative.steps_per_round=2",
    "train.batch_size=2",
    "online.max_new_tokens=6",
    "online.temperature=1.0",
    "train.lr=1e-2",
    "train.save_final=false",
]
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "iterative_ipo.yaml"


def _record_with_reference(monkeypatch, model) -> list:
    """Per step: the objective, the batch, the policy's log-probs at the step's weights and the reference's
    log-probs as the step saw them (π_t's cache is refilled at each round boundary, so read it at the step)."""
    from preflab.training import loop

    steps = []
    original = loop.objective_loss

    def spy(spec, params, scorer, reference, batch):
        steps.append((spec.name, batch, _score(model, batch), reference.logprobs(batch).double().clone()))
        return original(spec, params, scorer, reference, batch)

    monkeypatch.setattr(loop, "objective_loss", spy)
    return steps


def _snapshot_at(steps: set[int], model, out: dict):
    def callback(step: int, _metrics: dict) -> None:
        if step in steps:
            out[step] = copy.deepcopy(model)

    return callback


@pytest.mark.parametrize("reference", ["previous_iterate", "initial"])
def test_an_iterative_ipo_step_loss_is_the_ipo_loss_against_pi_t(tmp_path, monkeypatch, reference):
    """Each step: IPO by hand, (m − 1/(2β))² with m the log-ratio margin against the round's reference — π_t, the
    policy where the previous round ended (π_0 with iterative.reference: initial) — from recorded log-probs."""
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model)
    steps = _record_with_reference(monkeypatch, model)
    beta = 0.5
    cfg = make_cfg(
        tmp_path,
        *COMMON,
        "objective.name=ipo",
        f"objective.params.beta={beta}",
        "iterative.rounds=3",
        f"iterative.reference={reference}",
    )
    assert (cfg.algorithm, cfg.objective.name) == ("iterative_dpo", "ipo")
    snapshots: dict = {}
    train(
        cfg,
        records=PROMPTS,
        model=model,
        tokenizer=tok,
        judge=LengthJudge(),
        callbacks=[_snapshot_at({2, 4}, model, snapshots)],
    )
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [name for name, *_ in steps] == ["ipo"] * 6
    assert [r["iterative/round"] for r in rows] == [1, 1, 2, 2, 3, 3]
    for step, (row, (_, batch, policy, ref_used)) in enumerate(zip(rows, steps, strict=True), start=1):
        pi_t = initial if reference == "initial" or step <= 2 else snapshots[2 * ((step - 1) // 2)]
        ref = _score(pi_t, batch)
        assert (ref_used - ref).abs().max().item() <= 1e-5, step
        assert row["loss"] == pytest.approx(_hand_ipo(policy, ref, batch, beta), abs=1e-5), step
    if reference == "previous_iterate":  # each round starts at π = π_t: m = 0, (0 ∓ 1/(2β))² = 1
        assert [rows[i]["loss"] for i in (0, 2, 4)] == pytest.approx([1.0] * 3, abs=1e-5)
        # the reference moved: round 3's is not π_0
        batch = steps[-1][1]
        assert (steps[-1][3] - _score(initial, batch)).abs().max().item() > 1e-3
    else:
        assert rows[2]["loss"] != pytest.approx(1.0, abs=1e-3)  # round 2 starts away from π_0


@pytest.mark.parametrize("objective", ["simpo", "orpo"])
def test_iterative_simpo_builds_no_reference_and_its_loss_is_the_simpo_loss(tmp_path, monkeypatch, objective):
    def no_reference(*args, **kwargs):
        raise AssertionError(f"iterative {objective} built a reference")

    for name in ("FrozenCopyReference", "AdapterDisabledReference"):  # π_ref under full fine-tuning / LoRA
        monkeypatch.setattr(references, name, no_reference)
    monkeypatch.setattr(build, "PreviousIterateReference", no_reference)  # π_t
    monkeypatch.setattr(schedule_setup, "policy_now", no_reference)  # and its scorer
    seen = []
    original = REGISTRY[objective].fn

    def spy(inputs, params):
        seen.append(copy.copy(inputs))
        return original(inputs, params)

    monkeypatch.setattr(REGISTRY[objective], "fn", spy)
    model, tok = tiny_model(**TINY)
    steps = _record_steps(monkeypatch, model)
    params = ["objective.params.beta=2.0", "objective.params.gamma=0.5"] if objective == "simpo" else []
    cfg = make_cfg(
        tmp_path,
        *COMMON,
        f"objective.name={objective}",
        *params,
        "iterative.rounds=2",
        "lora.enabled=true",
        "lora.dropout=0.0",
    )
    train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge())
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [name for name, *_ in steps] == [objective] * 4 and len(seen) == 4
    for row, (_, batch, policy, reference), inputs in zip(rows, steps, seen, strict=True):
        assert isinstance(reference, NoReference)
        assert inputs.ref_chosen is None and inputs.ref_rejected is None  # no π_t forward pass either
        if objective == "simpo":
            assert row["loss"] == pytest.approx(_hand_simpo(policy, batch, 2.0, 0.5), abs=1e-5)
        assert "kl" not in row
    assert [r["iterative/round"] for r in rows] == [1, 1, 2, 2]


_PAIRS = "dpo, cdpo, rdpo, ipo, hinge, rpo, simpo, orpo"
_HEAD = (
    f"field 'objective.name': algorithm 'iterative_dpo' trains one of the pair objectives {_PAIRS} on rounds: "
    "sample from π_t, judge, then fit the round's loss; "
)


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        (
            "objective:\n  name: simpo\niterative:\n  reference: initial\n",
            6,
            "field 'iterative.reference': algorithm 'iterative_dpo' with objective 'simpo' uses no reference "
            "policy; remove iterative.reference: initial",
        ),
        (
            "objective:\n  name: orpo\nreference:\n  mode: frozen_copy\n",
            6,
            "field 'reference.mode': algorithm 'iterative_dpo' with objective 'orpo' uses no reference policy; "
            "reference.mode 'frozen_copy' would keep one (set it to auto or none)",
        ),
        (
            "objective:\n  name: sppo\n",
            4,
            _HEAD + "objective 'sppo' is the loss of algorithm 'sppo' on this schedule; set algorithm: sppo",
        ),
        (
            "objective:\n  name: inpo\n",
            4,
            _HEAD + "objective 'inpo' is the loss of algorithm 'inpo' on this schedule; set algorithm: inpo",
        ),
        (
            "objective:\n  name: kto\n",
            4,
            _HEAD + "objective 'kto' is the loss of algorithm 'kto', which trains on a fixed dataset of single",
        ),
        ("objective:\n  name: gpm\n", 4, _HEAD + "objective 'gpm' trains a reward model (algorithm 'gpm')"),
    ],
)
def test_a_combination_iterative_dpo_cannot_train_is_a_one_line_error_naming_the_line(
    tmp_path, monkeypatch, capsys, lines, line, message
):
    path = tmp_path / "run.yaml"
    path.write_text(f"seed: 0\nalgorithm: iterative_dpo\n{lines}")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}, line {line}, {message}"), str(err.value)
    assert "\n" not in str(err.value)
    code, text = run_cli(monkeypatch, capsys, "train", str(path))
    assert code == 2 and text == f"error: {err.value}"


def test_the_accepted_combinations_resolve_with_their_reference_schedule():
    from preflab.training.lm_algorithms import configured_algorithm
    from preflab.training.resolve import run_reference

    cases = [
        (["objective.name=ipo"], "previous_iterate", ("previous_iterate", True, False)),
        (["objective.name=ipo", "iterative.reference=initial"], "previous_iterate", ("frozen_copy", False, False)),
        (["objective.name=hinge", "lora.enabled=true"], "previous_iterate", ("previous_iterate", True, False)),
        (["objective.name=simpo"], "none", ("none", False, False)),
        (["objective.name=simpo", "reference.mode=none"], "none", ("none", False, False)),
        (["objective.name=orpo", "lora.enabled=true"], "none", ("none", False, False)),
    ]
    for overrides, schedule, resolved in cases:
        cfg = load_config(None, ["algorithm=iterative_dpo", *overrides])
        algo = configured_algorithm(cfg)
        assert (algo.name, algo.data, algo.reference) == ("iterative_dpo", "iterative", schedule), overrides
        spec = REGISTRY[algo.objective]
        assert run_reference(cfg, spec, spec.make_params(), "iterative") == resolved, overrides


def _resumable(out, *, callbacks=(), resume=False):
    cfg = make_cfg(
        out,
        *COMMON,
        "objective.name=ipo",
        "iterative.rounds=3",
        "iterative.steps_per_round=3",
        "train.lr=3e-3",
        "train.save_every=2",
        "lora.enabled=true",
        "lora.r=4",
        "lora.dropout=0.1",
        f"train.resume={str(resume).lower()}",
    )
    model, tok = tiny_model(**TINY)
    result = train(cfg, records=PROMPTS, model=model, tokenizer=tok, judge=LengthJudge(), callbacks=callbacks)
    return model, result


def test_iterative_ipo_resumed_mid_round_equals_an_uninterrupted_run(tmp_path):
    whole, _ = _resumable(tmp_path / "a")
    with pytest.raises(Killed):  # killed in round 2 (steps 4-6); the last checkpoint, step 4, is mid-round
        _resumable(tmp_path / "b", callbacks=[kill_at(5)])
    resumed, result = _resumable(tmp_path / "b", resume=True)
    assert result.resumed_from == 4 and result.steps == 9
    assert max_abs_diff(state(whole), state(resumed)) <= 1e-6
    a = read_metrics(tmp_path / "a" / "metrics.jsonl", "train")
    b = read_metrics(tmp_path / "b" / "metrics.jsonl", "train")
    assert [r["step"] for r in b] == list(range(1, 10))
    for ra, rb in zip(a, b, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], abs=1e-6)
        assert rb["iterative/winrate_chosen"] == ra["iterative/winrate_chosen"]  # the same samples


def test_the_iterative_ipo_recipe_shrinks_with_set_and_trains_on_a_tiny_model(tmp_path, tiny_dir, monkeypatch, capsys):
    run = tmp_path / "run"
    flags = [
        f"model.name_or_path={tiny_dir}",
        f"output_dir={run}",
        "iterative.rounds=2",
        "iterative.prompts_per_round=4",
        "iterative.steps_per_round=1",
        "iterative.samples_per_prompt=3",
        "online.num_prompts=8",
        "online.max_new_tokens=4",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.bf16=false",
        "train.progress=false",
        "train.save_every=0",
    ]
    code, _, err = run_entry(["train", str(RECIPE), *[a for f in flags for a in ("--set", f)]], monkeypatch, capsys)
    assert not code, err
    rows = read_metrics(run / "metrics.jsonl", "train")
    assert [(r["step"], r["iterative/round"]) for r in rows] == [(1, 1), (2, 2)]
    resolved = load_config(run / "config.yaml")
    assert (resolved.algorithm, resolved.objective.name, resolved.iterative.reference) == (
        "iterative_dpo",
        "ipo",
        "previous_iterate",
    )
    beta = resolved.objective.params["beta"]
    # LoRA adapters start at zero and π_t is the policy itself: m = 0 at step 1, the loss (1/(2β))² (25 at β = 0.1)
    assert rows[0]["loss"] == pytest.approx((1 / (2 * beta)) ** 2, rel=1e-5)
    assert all(math.isfinite(r["loss"]) and 0.0 <= r["iterative/winrate_chosen"] <= 1.0 for r in rows)
    assert (run / "final").is_dir()
