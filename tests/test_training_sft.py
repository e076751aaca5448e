"""Supervised fine-tuning on the LM trainer: the logged loss is the completion-token NLL recomputed by hand,
prompt tokens get neither loss nor gradient, training lowers the loss, the recipe runs shrunk by --set, and a
killed LoRA run resumes to the same weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from preflab.data import Demonstration, save_records
from preflab.data.collate import collate_examples
from preflab.data.tokenize import Tokenizer
from preflab.models import tiny_model
from preflab.models.logprobs import SequenceScorer
from preflab.objectives import get_objective
from preflab.training import read_metrics, train
from preflab.training.checkpoint import list_checkpoints
from preflab.training.step import demonstration_inputs
from test_training_utils import make_cfg, max_abs_diff, state

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "sft.yaml"
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "ocean"]


class Killed(Exception):
    pass


def kill_at(step: int):
    def callback(s: int, _metrics: dict) -> None:
        if s == step:
            raise Killed(f"killed after step {s}")

    return callback


def demonstrations(n: int) -> list[Demonstration]:
    """Completions of different lengths (1 to 3 repeats of the prompt's word), so token and sequence means differ."""
    return [Demonstration(f"Say {WORDS[i % 8]}.", " ".join([WORDS[i % 8]] * (1 + i % 3))) for i in range(n)]


def token_nll(model, tok, prompt: str, completion: str) -> tuple[float, int]:
    """(−Σ log π(completion tokens | prompt), their count), from the full log_softmax of the model's logits."""
    user = [{"role": "user", "content": prompt}]
    head = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": completion}], tokenize=False)
    p = tok(head, add_special_tokens=False)["input_ids"]
    c = tok(full[len(head) : -1], add_special_tokens=False)["input_ids"]  # up to and including <|im_end|>
    assert c[-1] == tok.eos_token_id
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    per_token = logp.gather(-1, ids[0, 1:, None]).squeeze(-1)
    return -per_token[len(p) - 1 :].sum().item(), len(c)


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("per_sequence", [False, True])
def test_logged_sft_loss_equals_the_hand_computed_nll(tmp_path, layout, per_sequence):
    records = demonstrations(3)
    cfg = make_cfg(
        tmp_path,
        "algorithm=sft",
        f"objective.params={{per_sequence: {str(per_sequence).lower()}}}",
        "train.batch_size=3",
        "train.max_steps=1",
        f"train.layout={layout}",
        "train.save_final=false",
    )
    model, tok = tiny_model()
    train(cfg, records=records, model=model, tokenizer=tok)
    logged = read_metrics(tmp_path / "metrics.jsonl", "train")[0]
    fresh, _ = tiny_model()  # step 1's loss is the initial weights'
    nll, n = zip(*(token_nll(fresh, tok, r.prompt, r.completion) for r in records), strict=True)
    assert len(set(n)) == 3  # unequal lengths: the two means differ
    expected = sum(a / b for a, b in zip(nll, n, strict=True)) / 3 if per_sequence else sum(nll) / sum(n)
    print(f"logged {logged['loss']:.6f}, by hand {expected:.6f}, tokens {n}")
    assert logged["loss"] == pytest.approx(expected, rel=1e-5)
    assert logged["num_tokens"] == sum(n)


def test_prompt_tokens_get_no_loss_and_no_gradient(tiny):
    model, tok = tiny
    model = model.float()
    ex = Tokenizer(tok).example(Demonstration("Say apple, please.", "apple apple"), 0)
    batch = collate_examples([ex], "demonstration", "padded", tok.pad_token_id)
    hidden: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        output.retain_grad()
        hidden.append(output)

    handle = model.model.norm.register_forward_hook(keep)  # the final hidden states, one per position
    try:
        policy = SequenceScorer(model, chunked_head=False)(batch.sequences)
        loss, _ = get_objective("sft")(demonstration_inputs(batch, policy, None))
        loss.backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    grad = hidden[0].grad[0].abs().sum(-1)  # (T,): position j predicts token j + 1
    p, c = len(ex.prompt_ids), len(ex.completions[0])
    assert torch.all(grad[: p - 1] == 0)  # positions predicting prompt tokens: no gradient
    assert torch.all(grad[p - 1 : p + c - 1] > 0)  # positions predicting completion tokens: all of them
    # and the loss is the completion tokens' mean NLL only
    nll, n = token_nll(model, tok, "Say apple, please.", "apple apple")
    assert n == c and loss.item() == pytest.approx(nll / n, rel=1e-5)


def test_a_few_sft_steps_lower_the_loss(tmp_path):
    cfg = make_cfg(
        tmp_path, "algorithm=sft", "train.batch_size=4", "train.max_steps=6", "train.lr=5e-3", "train.save_final=false"
    )
    model, tok = tiny_model()
    train(cfg, records=demonstrations(4), model=model, tokenizer=tok)
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")]
    print("sft losses:", [round(x, 4) for x in losses])
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))  # one full batch: every step lowers it
    assert losses[-1] < 0.7 * losses[0]


def test_the_recipe_runs_as_shipped_through_the_cli_shrunk_by_set(tmp_path, tiny_dir, monkeypatch, capsys):
    """`preflab train recipes/sft.yaml --set ...` (LoRA, packed layout, eval split) on a demonstrations file."""
    from preflab.cli import main

    data = save_records(demonstrations(12), tmp_path / "demos.jsonl")
    out = tmp_path / "run"
    sets = [
        f"model.name_or_path={tiny_dir}",
        f"data.path={data}",
        f"output_dir={out}",
        "train.max_steps=3",
        "train.batch_size=2",
        "train.bf16=false",
        "train.progress=false",
        "train.eval_every=3",
        "train.save_every=0",
    ]
    monkeypatch.setattr(sys, "argv", ["preflab", "train", str(RECIPE), *[a for s in sets for a in ("--set", s)]])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    rows = read_metrics(out / "metrics.jsonl", "train")
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] > 0 for r in rows)
    assert read_metrics(out / "metrics.jsonl", "eval")  # the held-out demonstrations were scored
    assert (out / "final").is_dir()


def test_a_killed_lora_sft_run_resumes_to_the_same_weights(tmp_path):
    records = demonstrations(5)  # global batch 2: batches straddle epoch ends

    def run(out, callbacks=(), resume=False):
        cfg = make_cfg(
            out,
            "algorithm=sft",
            "lora.enabled=true",
            "lora.r=4",
            "train.batch_size=2",
            "train.grad_accum=2",
            "train.max_steps=6",
            "train.lr=3e-3",
            "train.save_every=2",
            f"train.resume={str(resume).lower()}",
            "train.save_final=false",
        )
        model, tok = tiny_model()
        return model, train(cfg, records=records, model=model, tokenizer=tok, callbacks=callbacks)

    whole, _ = run(tmp_path / "a")
    with pytest.raises(Killed):
        run(tmp_path / "b", callbacks=[kill_at(3)])
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [2]
    resumed, result = run(tmp_path / "b", resume=True)
    assert result.resumed_from == 2 and result.steps == 6
    assert max_abs_diff(state(whole), state(resumed)) < 1e-6
