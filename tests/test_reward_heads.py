"""Reward-model heads on the tiny model (preflab.models.reward_heads): the general preference model fits a planted
cyclic preference that a Bradley–Terry model cannot, the HL-Gauss head learns a planted preference, the mixture's
EM recovers planted annotator groups, and every head saves → loads → scores the same."""

from __future__ import annotations

import pytest
import torch

from preflab.config import RunConfig
from preflab.data.collate import collate_examples
from preflab.data.records import PreferencePair
from preflab.data.tokenize import Tokenizer
from preflab.errors import ConfigError
from preflab.feedback import make_judge
from preflab.models import RewardScorer, load_tokenizer
from preflab.training import train

CYCLE = ("rock", "paper", "scissors")  # paper ≻ rock, scissors ≻ paper, rock ≻ scissors


def cycle_pairs(prompts: list[str]) -> list[PreferencePair]:
    """Every prompt compares each beating pair of the cycle once (chosen = the winner)."""
    beats = [(CYCLE[(i + 1) % 3], CYCLE[i]) for i in range(3)]
    return [PreferencePair(p, w, lose, metadata={"family": "cycle"}) for p in prompts for w, lose in beats]


def config(tmp_path, tiny_dir, algorithm: str, name: str, **reward) -> RunConfig:
    train_cfg = {"lr": 1e-3, "batch_size": 12, "max_steps": 40, "bf16": False, "progress": False,
                 "warmup_steps": 0, "layout": "padded"}
    return RunConfig.model_validate({"algorithm": algorithm, "output_dir": str(tmp_path / name), "seed": 0,
                                     "model": {"name_or_path": str(tiny_dir)}, "train": train_cfg,
                                     "reward": reward})


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
