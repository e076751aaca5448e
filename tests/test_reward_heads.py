"""Reward-model heads on the tiny model (preflab.models.reward_heads): the general preference model fits a planted
cyclic preference that a Bradley–Terry model cannot, the HL-Gauss head learns a planted preference, the mixture's
EM recovers planted annotator groups, and every head saves → loads → scores the same."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from preflab.config import RunConfig
from preflab.data.collate import collate_examples
from preflab.data.records import PreferencePair
from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError
from preflab.feedback import make_judge
from preflab.models import RewardScorer, load_reward_model, load_tokenizer
from preflab.training import train

CYCLE = ("rock", "paper", "scissors")  # paper ≻ rock, scissors ≻ paper, rock ≻ scissors


def cycle_pairs(prompts: list[str]) -> list[PreferencePair]:
    """Every prompt compares each beating pair of the cycle once (chosen = the winner)."""
    beats = [(CYCLE[(i + 1) % 3], CYCLE[i]) for i in range(3)]
    return [PreferencePair(p, w, lose, metadata={"family": "cycle"}) for p in prompts for w, lose in beats]


def config(tmp_path, tiny_dir, algorithm: str, name: str, **reward) -> RunConfig:
    train_cfg = {
        "lr": 1e-3,
        "batch_size": 12,
        "max_steps": 40,
        "bf16": False,
        "progress": False,
        "warmup_steps": 0,
        "layout": "padded",
    }
    return RunConfig.model_validate(
        {
            "algorithm": algorithm,
            "output_dir": str(tmp_path / name),
            "seed": 0,
            "model": {"name_or_path": str(tiny_dir)},
            "train": train_cfg,
            "reward": reward,
        }
    )


def outputs(model, tok, records, layout="padded") -> torch.Tensor:
    """The trainer's scorer on (chosen…, rejected…) of ``records``."""
    tk = Tokenizer(tok)
    batch = collate_examples([tk.example(r, i) for i, r in enumerate(records)], "pair", layout, tok.pad_token_id)
    with torch.no_grad():
        return RewardScorer(model.eval())(batch.sequences)


def test_gpm_fits_a_cyclic_preference_that_bradley_terry_cannot(tmp_path, tiny_dir):
    prompts = [f"game {i}" for i in range(4)]
    pairs = cycle_pairs(prompts)
    tok = load_tokenizer(str(tiny_dir))
    gpm = train(config(tmp_path, tiny_dir, "gpm", "gpm", dim=4), records=pairs, eval_records=pairs, tokenizer=tok)
    bt = train(config(tmp_path, tiny_dir, "bt_reward", "bt"), records=pairs, eval_records=pairs, tokenizer=tok)
    # accuracy on the cycle through the saved models' judges (every ordered pair of the 3 responses, 4 prompts)
    judge_gpm = make_judge("gpm", model=str(gpm.final_model_dir))
    judge_bt = make_judge("reward_model", model=str(bt.final_model_dir))
    prompts_x = [p.prompt for p in pairs]
    p_gpm = judge_gpm.compare_batch(prompts_x, [p.chosen for p in pairs], [p.rejected for p in pairs])
    p_bt = judge_bt.compare_batch(prompts_x, [p.chosen for p in pairs], [p.rejected for p in pairs])
    acc_gpm = sum(q > 0.5 for q in p_gpm) / len(pairs)
    acc_bt = sum(q > 0.5 for q in p_bt) / len(pairs)
    assert acc_gpm == 1.0  # every edge of the cycle, on every prompt
    assert acc_bt <= 2 / 3  # a scalar reward orders the three: at most two of the three edges
    assert gpm.eval_metrics["rewards/accuracies"] == 1.0 and bt.eval_metrics["accuracy"] <= 2 / 3
    # skew-symmetry: P(a ≻ b) + P(b ≻ a) = 1 and P(a ≻ a) = ½
    back = judge_gpm.compare_batch(prompts_x, [p.rejected for p in pairs], [p.chosen for p in pairs])
    assert [a + b for a, b in zip(p_gpm, back, strict=True)] == pytest.approx([1.0] * len(pairs), abs=1e-6)
    assert judge_gpm.compare("game 0", "rock", "rock") == pytest.approx(0.5, abs=1e-6)
    assert not judge_gpm.can_score
    # the judge reads what the trainer trained: its embeddings are the scorer's on the trainer's ids
    from transformers import AutoModelForSequenceClassification

    loaded = AutoModelForSequenceClassification.from_pretrained(gpm.final_model_dir)
    v = outputs(loaded, tok, pairs[:3])
    assert v.shape == (6, 4)
    emb = judge_gpm.embed_batch([p.prompt for p in pairs[:3]], [p.chosen for p in pairs[:3]])
    assert torch.allclose(emb, v[:3], atol=5e-2)
    # each judge refuses the other's model
    with pytest.raises(ConfigError, match="use judge: gpm"):
        make_judge("reward_model", model=str(gpm.final_model_dir))
    with pytest.raises(ConfigError, match="use judge: reward_model"):
        make_judge("gpm", model=str(bt.final_model_dir))


WORDS = "apple river stone cloud green quick lamp house tree bird music paper".split()


def separable(n: int, seed: int) -> list[PreferencePair]:
    """The chosen response ends in '!', the rejected one never holds it."""
    rng = random.Random(seed)
    return [
        PreferencePair(
            " ".join(rng.choices(WORDS, k=3)),
            " ".join(rng.choices(WORDS, k=rng.randint(1, 4))) + " !",
            " ".join(rng.choices(WORDS, k=rng.randint(1, 4))),
            metadata={"gold_chosen": 1.0, "gold_rejected": 0.0},
        )
        for _ in range(n)
    ]


def test_the_hl_gauss_head_learns_a_planted_preference(tmp_path, tiny_dir):
    tok = load_tokenizer(str(tiny_dir))
    cfg = config(tmp_path, tiny_dir, "bt_reward", "hl", head="hl_gauss", num_bins=21, v_min=-5.0, v_max=5.0)
    cfg.train.max_steps, cfg.train.batch_size = 12, 8
    held_out = separable(32, seed=1)
    res = train(cfg, records=separable(96, seed=0), eval_records=held_out, tokenizer=tok)
    assert res.eval_metrics["accuracy"] >= 0.9 and res.eval_metrics["margin"] > 0
    judge = make_judge("reward_model", model=str(res.final_model_dir))
    assert judge.head.name == "hl_gauss" and judge.head.num_bins == 21
    logits = judge.outputs_batch([p.prompt for p in held_out[:4]], [p.chosen for p in held_out[:4]])
    assert logits.shape == (4, 21)
    # the reward is the expected bin centre: centres -5 + 10/21·(i + ½)
    centres = torch.tensor([-5 + 10 / 21 * (i + 0.5) for i in range(21)])
    want = (torch.softmax(logits, -1) * centres).sum(-1)
    got = judge.score_batch([p.prompt for p in held_out[:4]], [p.chosen for p in held_out[:4]])
    assert got == pytest.approx(want.tolist(), abs=1e-5) and all(-5 < r < 5 for r in got)
    from preflab.evaluation.reward_model import evaluate_reward_model

    assert evaluate_reward_model(judge, held_out).gold_agreement >= 0.9


@pytest.mark.parametrize(
    "head,algorithm,size",
    [
        ("scalar", "bt_reward", {}),
        ("hl_gauss", "bt_reward", {"num_bins": 7}),
        ("gpm", "gpm", {"dim": 6}),
        ("mixture", "maxmin_em", {"groups": 3}),
    ],
)
def test_every_head_saves_and_loads_to_the_same_outputs(tmp_path, tiny_dir, head, algorithm, size):
    from transformers import AutoModelForSequenceClassification

    from preflab.models.reward_heads import head_of_model

    tok = load_tokenizer(str(tiny_dir))
    records = separable(8, seed=2)
    for i, r in enumerate(records):
        r.annotator = f"a{i % 2}"
    cfg = config(tmp_path, tiny_dir, algorithm, head, head=head, **size)
    cfg.train.max_steps, cfg.train.batch_size = 2, 8
    res = train(cfg, records=records, tokenizer=tok)
    loaded = AutoModelForSequenceClassification.from_pretrained(res.final_model_dir)
    assert head_of_model(loaded).name == head
    width = {"scalar": 1, "hl_gauss": 7, "gpm": 6, "mixture": 3}[head]
    assert loaded.config.num_labels == width
    a, b = outputs(loaded, tok, records), outputs(loaded, tok, records, layout="packed")
    assert a.shape == ((16,) if head in ("scalar", "hl_gauss") else (16, width))
    assert torch.allclose(a, b, atol=1e-5)  # every layout reads the same token
    again = AutoModelForSequenceClassification.from_pretrained(res.final_model_dir)
    assert torch.equal(outputs(again, tok, records), a)


def group_pairs(annotators_per_group: int, pairs_per_annotator: int, seed: int) -> tuple[list[PreferencePair], dict]:
    """Two planted groups with opposite tastes on the same comparisons: every annotator labels the same
    ``pairs_per_annotator`` (prompt, '… !', '…') triples; group 0 prefers the response ending in '!', group 1 the
    other, so that no single reward fits both."""
    rng = random.Random(seed)
    base = [
        (
            " ".join(rng.choices(WORDS, k=3)),
            " ".join(rng.choices(WORDS, k=rng.randint(1, 3))) + " !",
            " ".join(rng.choices(WORDS, k=rng.randint(1, 3))),
        )
        for _ in range(pairs_per_annotator)
    ]
    pairs, truth = [], {}
    for g, k in itertools.product(range(2), range(annotators_per_group)):
        name = f"g{g}-a{k}"
        truth[name] = g
        for prompt, bang, plain in base:
            w, lose = (bang, plain) if g == 0 else (plain, bang)
            pairs.append(PreferencePair(prompt, w, lose, annotator=name, group=f"g{g}"))
    rng.shuffle(pairs)
    return pairs, truth


def test_mixture_em_recovers_planted_annotator_groups(tmp_path, tiny_dir):
    from preflab.evaluation.mixture import adjusted_rand_index, annotator_groups

    tok = load_tokenizer(str(tiny_dir))
    pairs, truth = group_pairs(3, 6, seed=0)
    cfg = config(tmp_path, tiny_dir, "maxmin_em", "mix", groups=2)
    # one batch = the dataset: every step's E-step sees all of an annotator's labels (exact EM)
    cfg.train.batch_size, cfg.train.max_steps, cfg.train.scheduler, cfg.train.lr = len(pairs), 12, "constant", 2e-3
    res = train(cfg, records=pairs, tokenizer=tok)
    judge = make_judge("reward_model", model=str(res.final_model_dir))
    groups = annotator_groups(judge, pairs)
    assert groups.annotators == sorted(truth)
    ari = adjusted_rand_index([truth[a] for a in groups.annotators], groups.assignment)
    assert ari == 1.0
    assert groups.prior == pytest.approx([0.5, 0.5], abs=0.05)
    assert all(max(row) > 0.99 for row in groups.responsibilities)
    # one reward per group: each group's head orders its own annotators' pairs
    k0 = groups.group_of("g0-a0")
    for k, want in ((k0, "!"), (1 - k0, "")):
        mine = [p for p in pairs if truth[p.annotator] == (0 if k == k0 else 1)][:8]
        j = make_judge("reward_model", model=str(res.final_model_dir), label_index=k)
        probs = j.compare_batch([p.prompt for p in mine], [p.chosen for p in mine], [p.rejected for p in mine])
        assert sum(q > 0.5 for q in probs) >= 7, (k, want)


def test_adjusted_rand_index_by_hand():
    from preflab.evaluation.mixture import adjusted_rand_index

    assert adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0
    # contingency [[2, 1], [0, 1]]: index 1, a-sums C(3,2)+C(1,2)=3, b-sums C(2,2)+C(2,2)=2, C(4,2)=6
    # E = 3·2/6 = 1, max = 2.5: ARI = (1 − 1)/(2.5 − 1) = 0
    assert adjusted_rand_index([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(0.0)
    # [[2, 0], [1, 3]]... labels a = 0,0,1,1,1,1  b = 0,0,0,1,1,1: index 1+3=4, a 1+6=7, b 3+3=6, n 15
    # E = 42/15 = 2.8, max 6.5: (4 − 2.8)/(6.5 − 2.8) = 1.2/3.7
    assert adjusted_rand_index([0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]) == pytest.approx(1.2 / 3.7)


def test_bad_reward_model_input_is_one_line(tmp_path, tiny_dir, tiny):
    tok = load_tokenizer(str(tiny_dir))
    pairs, _ = group_pairs(1, 2, seed=0)
    pairs[1].annotator = None
    with pytest.raises(Exception) as err:
        train(config(tmp_path, tiny_dir, "maxmin_em", "bad"), records=pairs, tokenizer=tok)
    assert (
        str(err.value) == "row 1, field 'annotator': training data: a mixture reward model (maxmin_em) needs the "
        "annotator of every pair"
    )
    # a causal LM has no trained head: a judge refuses it
    with pytest.raises(ConfigError, match="has no trained reward head") as err:
        make_judge("reward_model", model=str(tiny_dir))
    assert err.value.field == "judge_args.model"
    # a head the algorithm does not train
    with pytest.raises(ConfigError, match="reward.head") as err:
        config(tmp_path, tiny_dir, "gpm", "x", head="scalar")
    assert str(err.value).startswith("field 'reward.head': algorithm 'gpm' trains a reward head of kind gpm")
    with pytest.raises(ConfigError, match="even size"):
        config(tmp_path, tiny_dir, "gpm", "x", dim=5)


def test_a_tokenizer_larger_than_the_models_embedding_is_refused(tmp_path, tiny_dir, monkeypatch, capsys):
    from fault_helpers import run_cli

    tok = load_tokenizer(str(tiny_dir))
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_dir), pad_token_id=tok.pad_token_id)
    rows = model.get_input_embeddings().num_embeddings
    big = load_tokenizer(str(tiny_dir))
    big.add_tokens([f"<extra_{i}>" for i in range(rows - len(big) + 5)])
    with pytest.raises(ConfigError, match=f"its tokenizer has {rows + 5} tokens but the model's embedding has {rows}"):
        train(config(tmp_path, tiny_dir, "bt_reward", "big"), records=separable(4, 0), tokenizer=big)
    model.save_pretrained(tmp_path / "rm" / "final")
    big.save_pretrained(tmp_path / "rm" / "final")
    from preflab.data import save_records

    save_records(separable(4, 0), tmp_path / "p.jsonl")
    code, line = run_cli(monkeypatch, capsys, "rm-eval", str(tmp_path / "rm"), "--pairs", str(tmp_path / "p.jsonl"))
    assert code == 2 and f"tokenizer has {rows + 5} tokens" in line
