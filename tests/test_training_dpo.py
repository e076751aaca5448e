"""The DPO loss the trainer logs equals −log σ(β m) recomputed by hand from the model's naive log-probs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from preflab.models import tiny_model
from preflab.training import read_metrics, train
from test_training_utils import make_cfg, synthetic_pairs


def naive_logprob(model, tok, prompt: str, completion: str) -> float:
    """log π(completion | prompt), rendered by the chat template and scored with a full log_softmax."""
    user = [{"role": "user", "content": prompt}]
    head = tok.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(user + [{"role": "assistant", "content": completion}], tokenize=False)
    assert full.startswith(head) and full.endswith("<|im_end|>\n")
    p = tok(head, add_special_tokens=False)["input_ids"]
    c = tok(full[len(head) : -1], add_special_tokens=False)["input_ids"]  # up to and including <|im_end|>
    assert c[-1] == tok.eos_token_id
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    targets = ids[0, 1:]
    per_token = logp.gather(-1, targets[:, None]).squeeze(-1)
    return per_token[len(p) - 1 :].sum().item()


@pytest.mark.parametrize("layout", ["padded", "prefix_shared"])
def test_logged_dpo_loss_equals_the_formula(tmp_path, layout):
    records = synthetic_pairs(3)
    beta = 0.5
    cfg = make_cfg(
        tmp_path,
        "objective.name=dpo",
        f"objective.params={{beta: {beta}}}",
        "train.batch_size=3",
        "train.max_steps=2",
        "train.lr=5e-3",
        "train.save_every=1",
        "train.keep_last=5",
        f"train.layout={layout}",
        "reference.mode=frozen_copy",
        "train.save_final=false",
    )
    model, tok = tiny_model()
    train(cfg, records=records, model=model, tokenizer=tok)
    rows = read_metrics(tmp_path / "metrics.jsonl", "train")

    # step 1: the policy is the reference, m = 0, loss = log 2
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)

    # step 2: policy = weights after step 1 (its checkpoint), reference = the initial weights
    ref_model, _ = tiny_model()
    policy, _ = tiny_model()
    weights = load_file(str(tmp_path / "checkpoints" / "step-00000001" / "model.safetensors"))
    missing, unexpected = policy.load_state_dict(weights, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}  # tied to the embeddings
    assert any(not torch.equal(weights[k], ref_model.state_dict()[k]) for k in weights)

    losses, margins, accs = [], [], []
    for r in records:
        h_w = naive_logprob(policy, tok, r.prompt, r.chosen) - naive_logprob(ref_model, tok, r.prompt, r.chosen)
        h_l = naive_logprob(policy, tok, r.prompt, r.rejected) - naive_logprob(ref_model, tok, r.prompt, r.rejected)
        z = beta * (h_w - h_l)
        losses.append(-F.logsigmoid(torch.tensor(z, dtype=torch.float64)).item())
        margins.append(z)
        accs.append(float(h_w > h_l))
    assert rows[1]["loss"] == pytest.approx(sum(losses) / 3, abs=2e-5)
    assert rows[1]["rewards/margins"] == pytest.approx(sum(margins) / 3, abs=2e-5)
    assert rows[1]["rewards/accuracies"] == pytest.approx(sum(accs) / 3)
    assert rows[1]["loss"] < math.log(2)  # one step of DPO moved the margins the right way
