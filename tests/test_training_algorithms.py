"""A run config names ``algorithm:``; the LM trainer takes the objective and the schedule from the table, and
whatever it cannot run is a one-line config error naming the field and line (never a silent downgrade)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from preflab.algorithms import ALGORITHMS, objective_choices
from preflab.config import load_config
from preflab.errors import ConfigError
from preflab.feedback import JUDGES, Judge, register_judge
from preflab.models import tiny_model
from preflab.training import read_metrics, train
from preflab.training.lm_algorithms import check_data
from test_training_utils import make_cfg, synthetic_pairs

RECIPES = sorted(Path(__file__).resolve().parent.parent.glob("recipes/*.yaml"))


def _first_steps(tmp_path, *overrides):
    model, tok = tiny_model(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    cfg = make_cfg(
        tmp_path, *overrides, "train.batch_size=4", "train.max_steps=2", "train.lr=3e-3", "train.save_final=false"
    )
    train(cfg, records=synthetic_pairs(4), model=model, tokenizer=tok)
    return cfg, read_metrics(tmp_path / "metrics.jsonl", "train")


def test_algorithm_dpo_trains_exactly_like_objective_name_dpo(tmp_path):
    new_cfg, new = _first_steps(tmp_path / "new", "algorithm=dpo", "objective.params.beta=0.3")
    old_cfg, old = _first_steps(tmp_path / "old", "objective.name=dpo", "objective.params.beta=0.3")
    assert (new_cfg.algorithm, new_cfg.objective.name) == (old_cfg.algorithm, old_cfg.objective.name) == ("dpo", "dpo")
    assert new[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # π = π_ref before the first update
    assert new[1]["loss"] < new[0]["loss"]  # the first update moved the policy
    for a, b in zip(new, old, strict=True):  # same losses and margins, step by step, to float rounding
        assert (a["loss"], a["rewards/margins"]) == pytest.approx((b["loss"], b["rewards/margins"]), abs=1e-7)


@pytest.mark.parametrize(
    ("yaml_text", "line", "message"),
    [
        (
            "algorithm: maxmin\n",
            1,
            "field 'algorithm': algorithm 'maxmin' (group_dual data, fixed reference) has no language-model "
            "schedule yet; it runs on the exact testbed only (preflab testbed run -a maxmin)",
        ),
        (
            "objective:\n  name: maxmin\n  params:\n    beta: 1.0\n",
            2,
            "field 'objective.name': algorithm 'maxmin' (group_dual data, fixed reference) has no "
            "language-model schedule yet",
        ),
        (
            "algorithm: sppo\ndata:\n  path: prefs.jsonl\n",
            3,
            "field 'data.path': algorithm 'sppo' trains on rounds: sample from π_t, judge, then fit the round's loss, "
            "not on an offline dataset; remove data.path",
        ),
        (
            "algorithm: iterative_dpo\ntrain:\n  max_steps: 10\n",
            3,
            "field 'train.max_steps': algorithm 'iterative_dpo' trains iterative.rounds × iterative.steps_per_round "
            "steps; unset train.max_steps",
        ),
        (
            "algorithm: sppo\niterative:\n  reference: initial\n",
            3,
            "field 'iterative.reference': algorithm 'sppo': objective 'sppo' is defined against the previous iterate "
            "π_t; iterative.reference: initial is for iterative_dpo",
        ),
        (
            "algorithm: sppo\nreference:\n  mode: cached\n",
            3,
            "field 'reference.mode': algorithm 'sppo' takes the previous iterate π_t as its reference",
        ),
        (
            "algorithm: iterative_dpo\niterative:\n  reference: initial\nreference:\n  mode: cached\n",
            5,
            "field 'reference.mode': an iterative schedule samples new completions every round",
        ),
        ("algorithm: nash_mdd\n", 1, "field 'algorithm': unknown algorithm 'nash_mdd'; did you mean 'nash_md'?"),
        (
            "seed: 0\nalgorithm: online_dpo\ndata:\n  path: prefs.jsonl\n",
            4,
            "field 'data.path': algorithm 'online_dpo' trains on pairs sampled from the current policy and judged at "
            "every step, not on an offline dataset; remove data.path",
        ),
        (
            "algorithm: dpo\ndata:\n  format: unpaired\n",
            3,
            "field 'data.format': algorithm 'dpo' trains on pairs or rankings; format 'unpaired' holds unpaired",
        ),
        (
            "algorithm: ipo\nobjective:\n  name: dpo\n",
            3,
            "field 'objective.name': objective.name 'dpo' contradicts algorithm 'ipo', whose objective is 'ipo'",
        ),
        ("objective:\n  name: hl_gauss\n", 2, "field 'objective.name': objective 'hl_gauss' is not an algorithm"),
        (
            "algorithm: bt_reward\ndata:\n  format: unpaired\n",
            3,
            "field 'data.format': algorithm 'bt_reward' trains on pairs or rankings; format 'unpaired' holds unpaired",
        ),
        (
            "algorithm: simpo\nobjective:\n  params:\n    gama: 1.0\n",
            3,
            "field 'objective.params': unknown parameter 'gama' of objective 'simpo'; did you mean 'gamma'?",
        ),
    ],
)
def test_what_the_trainer_cannot_run_is_a_config_error_at_load(tmp_path, yaml_text, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}, line {line}, {message}"), str(err.value)
    assert "\n" not in str(err.value)


def test_a_ranking_algorithm_given_pairs_names_the_data_field():
    data = SimpleNamespace(path="x.jsonl", eval_path=None, kind="pairs", format=None)
    with pytest.raises(ConfigError, match="^field 'data.kind': algorithm 'pro' trains on rankings, not pairs$"):
        check_data(ALGORITHMS["pro"], data)
    with pytest.raises(ConfigError, match="field 'data.format': .* format 'preference' holds pairs"):
        check_data(ALGORITHMS["lipo"], SimpleNamespace(path="x", eval_path=None, kind=None, format="preference"))
    check_data(ALGORITHMS["kto"], data)  # pairs split into desirable / undesirable completions (TRL's rule)
    check_data(ALGORITHMS["dpo"], SimpleNamespace(path="x", eval_path=None, kind="rankings", format=None))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["objective.name=online_dpo"])
    assert (cfg.algorithm, cfg.objective.name) == ("online_dpo", "online_dpo")
    assert load_config(None, []).algorithm == "dpo"
    from preflab.config import dump_config

    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(load_config(None, ["algorithm=kto"])))
    again = load_config(path)
    assert (again.algorithm, again.objective.name) == ("kto", "kto")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_name_an_algorithm_the_trainer_runs(recipe):
    cfg = load_config(recipe)
    text = recipe.read_text()
    algo = ALGORITHMS[cfg.algorithm]
    assert "\nalgorithm: " in text and algo.on_lm
    if cfg.objective.name == algo.objective:
        assert "  name:" not in text.split("objective:")[1][:40]
    else:  # objective.name only where the row leaves its objective open (online_ipo: online_dpo + ipo)
        schedule = cfg.algorithm.removesuffix(
            "_dpo"
        )  # online_dpo + ipo: online_ipo, iterative_dpo + ipo: iterative_ipo
        assert cfg.objective.name in objective_choices(algo) and recipe.stem == f"{schedule}_{cfg.objective.name}"
    if recipe.stem != "quickstart":  # a recipe is named after its algorithm (reward_model: bt_reward's)
        names = {
            "reward_model": "bt_reward",
            "ppo_reward_model": "ppo",
            "online_ipo": "online_dpo",
            "iterative_ipo": "iterative_dpo",
        }
        assert names.get(recipe.stem, recipe.stem) == cfg.algorithm


OFFLINE_RECIPES = [p for p in RECIPES if p.stem in ("dpo", "ipo", "simpo", "orpo", "kto", "sft")]


@pytest.mark.parametrize("recipe", OFFLINE_RECIPES, ids=lambda p: p.stem)
def test_offline_recipes_train_as_shipped_on_a_tiny_model(recipe, tmp_path, tiny_dir):
    """The shipped settings (prefix-shared or packed layout, cached or no reference, LoRA) run: two steps, loss
    log 2 first for DPO; SFT (no β) trains on demonstrations, the others on pairs."""
    from preflab.data import Demonstration, save_records

    if recipe.stem == "sft":
        demos = [Demonstration(p.prompt, p.chosen) for p in synthetic_pairs(12)]
        data = save_records(demos, tmp_path / "demos.jsonl")
    else:
        data = save_records(synthetic_pairs(12), tmp_path / "prefs.jsonl")
    cfg = load_config(
        recipe,
        [
            f"model.name_or_path={tiny_dir}",
            f"data.path={data}",
            f"output_dir={tmp_path / 'run'}",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.bf16=false",
            "train.progress=false",
            "train.save_every=0",
            "train.eval_every=0",
        ],
    )
    result = train(cfg)
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    assert [row["step"] for row in rows] == [1, 2] and result.final_model_dir is not None
    if cfg.algorithm == "sft":  # no β, no reference: a token-mean NLL over the completions
        assert "beta" not in cfg.objective.params and cfg.reference.mode == "auto"
        assert all(row["loss"] > 0 and row["num_tokens"] > 0 for row in rows)
        return
    beta = cfg.objective.params["beta"]
    first = {"dpo": math.log(2), "ipo": (1 / (2 * beta)) ** 2}  # π = π_ref before the first update (margin 0)
    if cfg.algorithm in first:
        assert rows[0]["loss"] == pytest.approx(first[cfg.algorithm], rel=1e-5)


class Always(Judge):
    """Prefers the first answer with a fixed probability (for the registry test)."""

    def __init__(self, tasks, p: float = 0.5):
        self.n_tasks, self.p, self.calls = len(tasks), p, 0
        Always.last = self

    @classmethod
    def from_config(cls, *, tasks=(), **kwargs):
        return cls(tasks, **kwargs)

    def compare(self, prompt, a, b) -> float:
        self.calls += 1
        return self.p


def test_a_registered_judge_is_usable_by_name_from_the_online_config(tmp_path):
    register_judge("always_first")(Always)
    try:
        cfg = make_cfg(
            tmp_path,
            "algorithm=online_dpo",
            "online.judge=always_first",
            "online.judge_args.p=0.75",
            "online.num_prompts=3",
            "online.max_new_tokens=4",
            "train.batch_size=2",
            "train.max_steps=2",
            "train.lr=1e-3",
            "lora.enabled=true",
            "lora.r=4",
            "train.save_final=false",
        )
        model, tok = tiny_model()
        train(cfg, model=model, tokenizer=tok)  # no judge= and no data: both come from the online config
        rows = read_metrics(tmp_path / "metrics.jsonl", "train")
        assert [r["online/judge_confidence"] for r in rows] == [0.75, 0.75]
        assert (Always.last.n_tasks, Always.last.calls) == (3, 4)  # 2 steps × 2 prompts, tasks handed over
        with pytest.raises(ConfigError, match="did you mean 'always_first'"):
            load_config(None, ["algorithm=online_dpo", "online.judge=always_frist"])
    finally:
        JUDGES.pop("always_first", None)


def test_the_quickstart_refuses_an_algorithm_that_does_not_train_on_its_pairs(tmp_path):
    from preflab.pipelines import run_quickstart
    from preflab.pipelines.defaults import quickstart_defaults

    with pytest.raises(
        ConfigError,
        match="^field 'algorithm': the quickstart trains on the pairs its annotators "
        "label; algorithm 'online_dpo' does not",
    ):
        run_quickstart(quickstart_defaults(["algorithm=online_dpo", f"output_dir={tmp_path}"]))
    assert not any(tmp_path.iterdir())  # refused before any stage ran
