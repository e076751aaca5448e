"""Every offline algorithm of the table with an LM schedule trains through the LM loop: steps on a fixed batch
lower its loss."""

from __future__ import annotations

import pytest

from preflab.algorithms import ALGORITHMS
from preflab.data import Demonstration
from preflab.models import tiny_model
from preflab.objectives import REGISTRY
from preflab.training import read_metrics, train
from preflab.training.lm_algorithms import lm_schedule
from test_training_utils import make_cfg, synthetic_pairs

# policy objectives on pairs / unpaired labels / demonstrations (bt_reward trains a reward model:
# tests/test_reward_model.py; the ranking algorithms PRO and LiPO: tests/test_training_listwise.py)
OFFLINE = sorted(
    name
    for name, algo in ALGORITHMS.items()
    if algo.on_lm and lm_schedule(algo) == "offline" and algo.model == "policy" and algo.data != "offline_rankings"
)


def _spec(name):
    return REGISTRY[ALGORITHMS[name].objective]


def test_the_table_has_offline_lm_algorithms_of_every_kind():
    assert {_spec(n).inputs for n in OFFLINE} == {"pair", "unpaired", "demonstration"}
    assert set(OFFLINE) == {"dpo", "cdpo", "rdpo", "ipo", "hinge", "rpo", "simpo", "orpo", "kto", "sft"}


@pytest.mark.parametrize("name", OFFLINE)
def test_steps_on_a_fixed_batch_lower_the_loss(name, tmp_path):
    records = synthetic_pairs(4)
    n = 4 if _spec(name).inputs == "pair" else 8  # unpaired objectives see each pair as two examples
    if _spec(name).inputs == "demonstration":  # SFT imitates the chosen answers
        records, n = [Demonstration(p.prompt, p.chosen) for p in records], 4
    cfg = make_cfg(
        tmp_path,
        f"algorithm={name}",
        f"train.batch_size={n}",
        "train.max_steps=4",
        "train.lr=3e-3",
        "train.save_final=false",
    )
    model, tok = tiny_model(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
    result = train(cfg, records=records, eval_records=records, model=model, tokenizer=tok)
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")
    first = rows[0]["loss"]  # computed before the first update, on the whole (fixed) batch
    last = result.eval_metrics["loss"]  # the same batch after four updates
    assert [r["step"] for r in rows] == list(range(1, 5))
    assert last < first - 0.05 * abs(first), (name, first, last)
    if _spec(name).needs_ref:  # policy == reference before the first step: every log-ratio is 0
        assert rows[0].get("rewards/margins", 0.0) == pytest.approx(0.0, abs=1e-6)
