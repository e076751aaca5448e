"""Judges: gold, reward model (tiny random classifier), pairwise preference model, LLM order swap."""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch

from preflab.errors import ConfigError, DataError
from preflab.feedback.annotators import BTAnnotator
from preflab.feedback.judges import (
    AnnotatorJudge,
    GoldJudge,
    LLMJudge,
    PreferenceModelJudge,
    RewardFnJudge,
    RewardModelJudge,
)
from preflab.feedback.tasks import get_suite


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.fixture(scope="module")
def tiny_rm(tiny):
    from transformers import LlamaForSequenceClassification

    lm, tok = tiny
    cfg = copy.deepcopy(lm.config)
    cfg.num_labels = 1
    with torch.random.fork_rng():
        torch.manual_seed(0)
        rm = LlamaForSequenceClassification(cfg).eval()
    return rm, tok


def test_gold_judge():
    tasks = get_suite("word_limit").tasks(2, seed=0)
    judge = GoldJudge(tasks)
    t = tasks[0]
    k = t.params["max_words"]
    topic = t.params["topic_words"][0]  # word_limit answers must be on topic
    short, long = f"one {topic} two three", " ".join([topic, *(f"w{i}" for i in range(2 * k - 1))])
    assert judge.score(t.prompt, long) == 0.5 and judge.score(t, short) == 1.0
    assert judge.compare(t.prompt, short, long) == 1.0
    assert judge.compare(t.prompt, long, short) == 0.0
    assert judge.compare(t.prompt, short, f"three {topic} four five") == 0.5
    assert GoldJudge(tasks, temperature=0.25).compare(t, short, long) == pytest.approx(sigmoid(0.5 / 0.25))
    with pytest.raises(DataError, match="no task"):
        judge.score("unknown prompt", "x")
    assert judge.can_score


def test_reward_model_judge_batches_like_single_rows(tiny_rm, tmp_path):
    rm, tok = tiny_rm
    judge = RewardModelJudge(rm, tok, batch_size=3)
    prompts = ["hi", "a much longer prompt about cats", [{"role": "user", "content": "2+2?"}], "x"]
    responses = ["hello", "cats are great", "4", "a long, long, long response " * 3]
    batched = judge.score_batch(prompts, responses)
    for p, r, b in zip(prompts, responses, batched, strict=True):
        turns = [{"role": "user", "content": p}] if isinstance(p, str) else p
        text = tok.apply_chat_template(turns + [{"role": "assistant", "content": r}], tokenize=False)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            single = rm(input_ids=ids).logits[0, 0].float().item()
        assert b == pytest.approx(single, abs=2e-2)
    pab = judge.compare("hi", "hello", "bye")
    ra, rb = judge.score("hi", "hello"), judge.score("hi", "bye")
    assert pab == pytest.approx(sigmoid(ra - rb), abs=1e-6)
    assert pab + judge.compare("hi", "bye", "hello") == pytest.approx(1.0, abs=1e-6)
    # any sequence-classification checkpoint loads through preflab.models.load_model
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    loaded = RewardModelJudge.from_pretrained(str(tmp_path / "rm"))
    assert loaded.score("hi", "hello") == pytest.approx(ra, abs=1e-4)
    assert loaded.name.startswith("rm:")


def test_reward_fn_judge():
    judge = RewardFnJudge(lambda ps, rs: [len(r) for r in rs])
    assert judge.compare("q", "abc", "a") == pytest.approx(sigmoid(2.0))
    assert judge.score_batch(["q", "q"], ["", "xy"]) == [0.0, 2.0]


def test_preference_model_judge_symmetrises(tiny_rm):
    rm, tok = tiny_rm
    judge = PreferenceModelJudge(rm, tok)
    p = judge.compare("q", "first answer", "second")
    assert p + judge.compare("q", "second", "first answer") == pytest.approx(1.0, abs=1e-9)
    raw = PreferenceModelJudge(rm, tok, symmetric=False)
    fwd, back = raw.compare("q", "first answer", "second"), raw.compare("q", "second", "first answer")
    assert p == pytest.approx(0.5 * (fwd + 1 - back), abs=1e-6)
    # a pure position preference (always the first) cancels to 1/2
    stub = PreferenceModelJudge(prob_fn=lambda ps, a, b: [0.9] * len(ps))
    assert stub.compare("q", "a", "b") == pytest.approx(0.5)


class StubJudgeLM(torch.nn.Module):
    """Reads the rendered judge prompt; z_A − z_B = bias + len(first response) − len(second)."""

    def __init__(self, tok, bias: float) -> None:
        super().__init__()
        self.tok, self.bias = tok, bias
        self.a_id = tok("A", add_special_tokens=False)["input_ids"][0]
        self.calls: list[tuple[str, str]] = []

    @property
    def device(self):
        return torch.device("cpu")

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], len(self.tok))
        for row, ids in enumerate(input_ids):
            text = self.tok.decode(ids[attention_mask[row].bool()])
            first, second = re.search(r"Response A:\n(.*?)\n\nResponse B:\n(.*?)\n\nAnswer", text, re.S).groups()
            self.calls.append((first, second))
            logits[row, -1, self.a_id] = self.bias + len(first) - len(second)
        return type("Out", (), {"logits": logits})()


def test_llm_judge_asks_both_orders_and_cancels_position_bias(tiny):
    _, tok = tiny
    model = StubJudgeLM(tok, bias=2.0)
    judge = LLMJudge(model, tok)
    assert judge.compare("q", "xx", "yy") == pytest.approx(0.5)  # equal quality: bias cancels
    assert model.calls == [("xx", "yy"), ("yy", "xx")]
    got = judge.compare("q", "xxx", "y")  # first is better by 2
    assert got == pytest.approx(0.5 * (sigmoid(2 + 2) + 1 - sigmoid(2 - 2)))
    one_way = LLMJudge(model, tok, both_orders=False)
    assert one_way.compare("q", "xx", "yy") == pytest.approx(sigmoid(2.0))  # biased without the swap
    batch = judge.compare_batch(["q", "q"], ["xx", "xxx"], ["yy", "y"])
    assert batch == pytest.approx([0.5, got])


def test_llm_judge_with_a_real_tiny_model(tiny):
    lm, tok = tiny
    judge = LLMJudge(lm, tok)
    p = judge.compare("Say hi", "hello there", "bye")
    assert 0.0 < p < 1.0
    assert p + judge.compare("Say hi", "bye", "hello there") == pytest.approx(1.0, abs=1e-6)
    batch = judge.compare_batch(["Say hi", "a longer instruction here"], ["hello there", "ok"], ["bye", "no"])
    assert batch[0] == pytest.approx(p, abs=2e-2)
    with pytest.raises(ConfigError, match="one"):
        LLMJudge(lm, tok, labels=("AB", "B"))


def test_annotator_judge():
    gold = {"good": 0.9, "bad": 0.1}
    judge = AnnotatorJudge(BTAnnotator("noisy", temperature=0.0, flip_rate=0.2), lambda p, r: gold[r])
    assert judge.compare("q", "good", "bad") == pytest.approx(0.8)
    vote = judge.label("q", "good", "bad")
    assert vote.annotator == "noisy" and vote.prob == pytest.approx(0.8)


def test_make_judge(tiny_rm, tmp_path):
    from preflab.feedback import make_judge

    tasks = get_suite("word_limit").tasks(2, seed=0)
    topic = tasks[0].params["topic_words"][0]  # word_limit answers must be on topic
    gold = make_judge("gold", tasks=tasks, temperature=0.0)
    answer = f"{topic} is a joy"  # four distinct words: 1.0; the topic word looped 50 times: 0.25 * k / 50
    assert gold.compare(tasks[0], answer, " ".join([topic] * 50)) == 1.0
    ann = make_judge("annotators", tasks=tasks, pool="noisy", seed=0)
    assert ann.compare(tasks[0].prompt, answer, " ".join([topic] * 50)) == pytest.approx(0.8, abs=1e-3)
    rm, tok = tiny_rm
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    assert isinstance(make_judge("reward_model", model=str(tmp_path / "rm")), RewardModelJudge)
    pm = make_judge("preference_model", model=str(tmp_path / "rm"))
    assert pm.compare("q", "a", "b") + pm.compare("q", "b", "a") == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="unknown judge"):
        make_judge("oracle")
    with pytest.raises(ConfigError, match="model="):
        make_judge("reward_model")
