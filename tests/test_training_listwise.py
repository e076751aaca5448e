"""PRO and LiPO train language models on rankings as rankings (K responses a prompt, not binarised pairs)."""

from __future__ import annotations

import copy

import pytest
import torch

from preflab.config import load_config
from preflab.data.collate import collate_examples
from preflab.data.records import Ranking
from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError, DataError
from preflab.models import tiny_model, tiny_tokenizer
from preflab.models.logprobs import SequenceScorer
from preflab.objectives import REGISTRY, RankingInputs
from preflab.training import read_metrics, train
from test_training_utils import make_cfg

TINY = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 64}
RANKINGS = [
    Ranking("Name a fruit.", ["apple", "a pear", "rock"], scores=[2.0, 1.0, 0.0]),
    Ranking("Say hello.", ["hello there", "hi", "bye", "no"], ranks=[1, 2, 3, 4]),
    Ranking("Name a colour.", ["red", "stone"], scores=[1.0, 0.0]),
    Ranking("Name a river.", ["the Nile", "Seine", "a cat"], scores=[1.0, 1.0, 0.0]),
]


def test_rankings_collate_with_their_scores_and_a_padding_mask():
    tk = Tokenizer(tiny_tokenizer())
    examples = [tk.example(r, i) for i, r in enumerate(RANKINGS[:3])]
    batch = collate_examples(examples, "ranking", "padded", 0)
    assert batch.sequences.num_sequences == 3 * 4  # padded to the largest list, K = 4
    assert batch.meta["scores"].tolist() == [[2, 1, 0, 0], [-1, -2, -3, -4], [1, 0, 0, 0]]
    assert batch.meta["mask"].tolist() == [[True, True, True, False], [True] * 4, [True, True, False, False]]


def test_a_ranking_without_scores_or_with_one_response_is_a_row_error():
    tk = Tokenizer(tiny_tokenizer())
    with pytest.raises(DataError, match="row 5.*scores or ranks"):
        tk.example(Ranking("x", ["a", "b"]), 5)
    with pytest.raises(DataError, match="at least two responses"):
        tk.example(Ranking("x", ["a"], scores=[1.0]), 0)


@pytest.mark.parametrize("algorithm", ["pro", "lipo"])
def test_the_first_step_is_the_objective_on_each_lists_log_probs(tmp_path, algorithm):
    cfg = make_cfg(
        tmp_path,
        f"algorithm={algorithm}",
        "train.batch_size=4",
        "train.max_steps=1",
        "train.save_final=false",
        "train.lr=1e-3",
    )
    model, tok = tiny_model(**TINY)
    initial = copy.deepcopy(model).eval()
    train(cfg, records=RANKINGS, model=model, tokenizer=tok)
    (row,) = read_metrics(tmp_path / "metrics.jsonl", "train")
    # by hand: every response scored alone, the lists padded with -inf-free zeros under a mask
    tk = Tokenizer(tok)
    scorer = SequenceScorer(initial).eval()
    k = 4
    policy = torch.zeros(4, k)
    scores = torch.zeros(4, k)
    mask = torch.zeros(4, k, dtype=torch.bool)
    length = torch.ones(4, k)
    for g, rec in enumerate(RANKINGS):
        ex = tk.example(rec, g)
        for j, comp in enumerate(ex.completions):
            single = collate_examples([type(ex)(g, ex.prompt_ids, (comp,), label=1.0)], "unpaired", "padded", 0)
            with torch.no_grad():
                policy[g, j] = scorer(single.sequences).float()[0]
            scores[g, j], mask[g, j], length[g, j] = ex.scores[j], True, len(comp)
    spec = REGISTRY[algorithm]
    inputs = RankingInputs(
        policy=policy, ref=policy.clone() if spec.needs_ref else None, scores=scores, mask=mask, length=length
    )
    loss, _ = spec.fn(inputs, spec.make_params())
    assert row["loss"] == pytest.approx(loss.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("algorithm", ["pro", "lipo"])
def test_steps_on_a_fixed_batch_of_rankings_lower_the_loss(tmp_path, algorithm):
    cfg = make_cfg(
        tmp_path,
        f"algorithm={algorithm}",
        "train.batch_size=4",
        "train.max_steps=4",
        "train.lr=3e-3",
        "train.save_final=false",
    )
    model, tok = tiny_model(**TINY)
    result = train(cfg, records=RANKINGS, eval_records=RANKINGS, model=model, tokenizer=tok)
    first = read_metrics(tmp_path / "metrics.jsonl", "train")[0]["loss"]  # before the first update
    assert result.eval_metrics["loss"] < first - 1e-3


def test_a_ranking_algorithm_given_pairs_is_a_config_error(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("algorithm: lipo\ndata:\n  path: x.jsonl\n  format: preference\n")
    with pytest.raises(ConfigError, match=r"line 4, field 'data.format': algorithm 'lipo' trains on rankings"):
        load_config(path)
