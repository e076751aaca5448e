"""LM agents (prompting, parsing, batching, the uniform fallback) and the regret-loss transformer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preflab.arena import ArenaConfig, run_arena
from preflab.arena.agents import Observation
from preflab.arena.lm_agent import LMAgent, LMBackend, parse_distribution
from preflab.arena.regret_loss import (
    RegretTransformerAgent,
    compare_with_ftrl,
    hedge_probs,
    load,
    regret_loss,
    save,
    synthetic_losses,
    train,
)
from preflab.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "k", "expected"),
    [
        ("[0.2, 0.5, 0.3]", 3, [0.2, 0.5, 0.3]),
        ("Sure! [20, 30, 50] is my choice", 3, [0.2, 0.3, 0.5]),
        ("I would play 0.25, 0.75", 2, [0.25, 0.75]),
        ("action 1, definitely action 1", 3, [0.0, 1.0, 0.0]),
        ("2", 3, [0.0, 0.0, 1.0]),
    ],
)
def test_parse_distribution(text, k, expected):
    assert parse_distribution(text, k) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "[0.5, 0.5]",
        "1.26 (a number between 0 and 1.26)",
        "[0, 0, 0]",
        "[-1, 1, 1]",
        "action 0 or action 2",
        "7",
        "no idea",
        "",
    ],
)
def test_unparseable_answers(text):
    assert parse_distribution(text, 3) is None


class ScriptedBackend(LMBackend):
    """An LMBackend whose 'model' answers from a script: exercises batching, parsing and the fallback."""

    def __init__(self, script):
        self.script, self.calls, self.batches, self.prompts = script, 0, [], []
        self.temperature, self.max_new_tokens, self.seed, self.bf16, self.stop_ids = 0.0, None, 0, False, ()

    def answer(self, prompts, round_seed, k):
        self.calls += 1
        self.batches.append(len(prompts))
        self.prompts.append(prompts)
        return [self.script(round_seed, i) for i in range(len(prompts))]


def test_lm_agent_batches_seeds_and_falls_back_to_uniform():
    # round 0: every seed answers all-on-action-1; later rounds: seed 0 garbage, others [1, 0]
    backend = ScriptedBackend(lambda t, i: "[0, 1]" if t == 0 else ("what?" if i == 0 else "[1, 0]"))
    s = run_arena(
        ArenaConfig(env="experts:ftl_trap", agents=["llm"], horizon=4, seeds=3, n_actions=2), lm_backend=backend
    )
    assert backend.calls == 4 and backend.batches == [3, 3, 3, 3]  # one sampler call per round, all seeds
    row = s["agents"]["llm"]
    assert row["parse_failures"] == 3 and row["lm_rounds"] == 12 and row["parse_failure_rate"] == 0.25
    assert row["parse_fallback"] == "uniform"
    # ftl_trap, K=2: losses (½,0) (0,1) (1,0) (0,1); the best action (0) pays 1.5. Seed 0 plays e1, ½½, ½½,
    # ½½: 0 + ½ + ½ + ½ = 1.5 -> regret 0; seeds 1, 2 play e1, e0, e0, e0: 0 + 0 + 1 + 0 = 1 -> regret -0.5
    assert 3 * row["regret"]["mean"][-1] == pytest.approx(0 - 0.5 - 0.5)


def test_lm_prompts_carry_the_history_raw_and_summarised():
    for variant, needle in (
        ("raw", "Round 2: losses [0.00, 1.00]"),
        ("summary", "total loss of each action is [1.50, 1.00]"),
    ):
        backend = ScriptedBackend(lambda t, i: "[0.5, 0.5]")
        run_arena(
            ArenaConfig(
                env="experts:ftl_trap",
                agents=["llm" if variant == "raw" else "llm_summary"],
                horizon=4,
                seeds=1,
                n_actions=2,
            ),
            lm_backend=backend,
        )
        last = backend.prompts[-1][0][-1]["content"]
        assert needle in last and "Round 4:" in last
    backend = ScriptedBackend(lambda t, i: "[0.5, 0.5]")
    run_arena(ArenaConfig(env="bandit", agents=["llm"], horizon=3, seeds=1, n_actions=2), lm_backend=backend)
    system, *_, last = backend.prompts[-1][0]
    assert "only that action's loss" in system["content"] and "you played action" in last["content"]
    backend = ScriptedBackend(lambda t, i: "[0.5, 0.25, 0.25]")
    run_arena(ArenaConfig(env="duel:condorcet", agents=["llm_summary"], horizon=3, seeds=1), lm_backend=backend)
    assert "duels" in backend.prompts[-1][0][-1]["content"]


def test_two_lm_players_share_one_call_per_round():
    backend = ScriptedBackend(lambda t, i: "[1, 0]")
    s = run_arena(ArenaConfig(env="game:coordination", agents=["llm"], horizon=5, seeds=2), lm_backend=backend)
    assert backend.batches == [4] * 5  # 2 seeds × 2 players
    row = s["agents"]["llm"]
    assert row["final_cce_gap_mean"] == 0.0 and row["final_row_probs"] == [1.0, 0.0]  # (0, 0) pays both 1


def test_lm_agent_with_a_real_tiny_model(tiny):
    model, tok = tiny
    backend = LMBackend(model, tok, temperature=1.0, max_new_tokens=6)
    s = run_arena(
        ArenaConfig(env="experts:stochastic", agents=["llm"], horizon=3, seeds=2, n_actions=2), lm_backend=backend
    )
    row = s["agents"]["llm"]
    assert backend.calls == 3 and row["lm_rounds"] == 6
    assert 0 <= row["parse_failures"] <= 6 and len(row["regret"]["mean"]) == 3
    a = LMAgent(backend)
    a.reset(2, 3, np.random.default_rng(0), feedback="full")
    a.update(Observation(0, action=0, loss=0.2, losses=np.array([0.2, 0.9])))
    p = a.act()
    assert p.shape == (2,) and p.sum() == pytest.approx(1.0) and len(a.answers) == 1


# ------------------------------------------------------------------------------------------------ regret-loss


def test_regret_loss_by_hand():
    R = torch.tensor([1.0, -1.0, 2.0, 0.0])
    # k = 0: plain mean of max(R, 0)² per group: (1 + 0)/2 and (4 + 0)/2 -> mean 1.25
    assert float(regret_loss(R, 2, 0.0)) == pytest.approx(1.25)
    # k large: the worst sequence of each group: (1 + 4)/2
    assert float(regret_loss(R, 2, 50.0)) == pytest.approx(2.5, rel=1e-6)


def test_regret_loss_training_recovers_ftrl(tmp_path):
    res = train(k=3, horizon=15, steps=250, batch=128, seed=0)
    assert np.mean(res.losses[-20:]) < 0.2 * np.mean(res.losses[:5])
    rng = np.random.default_rng(7)
    cmp = compare_with_ftrl(res.model, synthetic_losses(256, 15, 3, rng), synthetic_losses(256, 15, 3, rng))
    assert cmp["tv_to_ftrl"] < 0.05 and cmp["tv_to_uniform"] > 0.3 and cmp["eta"] > 0.5
    assert cmp["regret_model"] <= cmp["regret_ftrl"] + 0.1 and cmp["regret_model"] < 0.5 * cmp["regret_uniform"]
    path = save(res.model, tmp_path / "rt.pt")
    agent = RegretTransformerAgent(load(path))
    agent.reset(3, 4, np.random.default_rng(0))
    seq = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.4], [0.0, 1.0, 0.6]])
    for t, ell in enumerate(seq):
        agent.update(Observation(t, losses=ell))
    with torch.no_grad():
        direct = res.model(torch.as_tensor(np.vstack([seq, np.zeros(3)])[None], dtype=torch.float32))[0, -1]
    assert agent.act() == pytest.approx(direct.double().numpy(), abs=1e-6)
    assert agent.act()[0] > 0.5  # the action with the least cumulative loss leads
    with pytest.raises(ConfigError, match="trained for 3 actions"):
        agent.reset(2, 4, np.random.default_rng(0))
    s = run_arena(
        ArenaConfig(
            env="experts:stochastic",
            agents=["regret_transformer", "hedge"],
            horizon=30,
            seeds=2,
            regret_transformer=str(path),
        )
    )
    assert s["agents"]["regret_transformer"]["final_regret_mean"] < 30 * 0.3


def test_hedge_probs_closed_form():
    seq = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    p = hedge_probs(seq, np.log(3.0))
    assert p[0, 0] == pytest.approx([0.5, 0.5]) and p[0, 1] == pytest.approx([0.25, 0.75])


def test_regret_transformer_needs_a_model_and_a_readable_file(tmp_path):
    with pytest.raises(ConfigError, match="needs --regret-transformer"):
        ArenaConfig(env="experts", agents=["regret_transformer"], horizon=3, seeds=1)
    bad = tmp_path / "x.pt"
    bad.write_text("nope")
    with pytest.raises(ConfigError, match="not a regret-loss transformer"):
        load(bad)


def test_cli_llm_agent_on_a_model_directory(tiny_dir, tmp_path):
    import json

    from typer.testing import CliRunner

    from preflab.cli import app

    out = tmp_path / "run"
    res = CliRunner().invoke(
        app,
        [
            "arena",
            "run",
            "--env",
            "duel:condorcet",
            "--agents",
            "llm_summary,rucb",
            "--model",
            str(tiny_dir),
            "--horizon",
            "2",
            "--seeds",
            "2",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    row = json.loads((out / "results.json").read_text())["agents"]["llm_summary"]
    assert row["lm_rounds"] == 4 and row["parse_fallback"] == "uniform" and "parse failures" in res.output


def test_distillation_pairs_put_the_teachers_weights_on_the_better_action(tmp_path):
    import json
    import math

    from typer.testing import CliRunner

    from preflab.arena.distill import distillation_pairs
    from preflab.arena.envs import experts_env
    from preflab.cli import app

    rows = distillation_pairs("experts:ftl_trap", [0], horizon=4, n_actions=2)
    # ftl_trap: losses (½, 0) (0, 1) (1, 0) (0, 1); Hedge η = √(8 ln 2 / 4): round 2 after L = (½, 0)
    eta = math.sqrt(8 * math.log(2) / 4)
    p1 = 1 / (1 + math.exp(-eta * 0.5))  # weight on action 1, the leader
    first = rows[0]
    assert first["meta"]["round"] == 2
    assert first["chosen"][0]["content"] == f"[{1 - p1:.2f}, {p1:.2f}]"
    assert first["rejected"][0]["content"] == f"[{p1:.2f}, {1 - p1:.2f}]"
    assert "Round 1: losses [0.50, 0.00]" in first["prompt"][-1]["content"]
    # round 3 after L = (½, 1): the leader is action 0 now
    assert rows[1]["meta"]["round"] == 3
    assert json.loads(rows[1]["chosen"][0]["content"])[0] > 0.5
    assert experts_env("ftl_trap", 2, 4, 0).losses[1].tolist() == [0.0, 1.0]
    out = tmp_path / "pairs.jsonl"
    res = CliRunner().invoke(app, ["arena", "distill-data", "--out", str(out), "--seeds", "0-2", "-T", "6"])
    assert res.exit_code == 0, res.output
    assert len(out.read_text().splitlines()) > 0 and "pairs from 3 hedge trajectories" in res.output
    with pytest.raises(ConfigError, match="full-information"):
        distillation_pairs("experts", [0], 4, 2, teacher="exp3")


def test_distillation_demonstrations_parse_back_to_the_teachers_distribution(tmp_path):
    """--sft writes one demonstration per round after the first: the LM agent's prompt for that history, and the
    teacher's (Hedge's) distribution as the agent answers, which the agent's parser reads back to within the
    two decimals it is written with. --out and --sft together write both files; neither is a one-line error."""
    import json

    from typer.testing import CliRunner

    from preflab.arena.agents import AGENTS, Observation
    from preflab.arena.envs import make_env
    from preflab.arena.lm_agent import parse_distribution
    from preflab.cli import app
    from preflab.data import load_preferences

    demos, pairs = tmp_path / "demos.jsonl", tmp_path / "pairs.jsonl"
    args = ["arena", "distill-data", "--sft", str(demos), "--out", str(pairs), "--seeds", "0-1", "-T", "5", "-K", "3"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote 8 demonstrations from 2 hedge trajectories" in res.output and pairs.exists()
    loaded = load_preferences(str(demos))
    assert (loaded.format, loaded.kind, len(loaded.records)) == ("prompt_completion", "demonstrations", 8)
    rows = [json.loads(line) for line in demos.read_text().splitlines()]
    # the teacher's distributions, replayed: Hedge on the same environments and seeds
    for seed in (0, 1):
        env = make_env("experts:stochastic", horizon=5, seed=seed, n_actions=3)
        hedge = AGENTS["hedge"][0]()
        hedge.reset(3, 5, np.random.default_rng(seed))
        past = []
        for t in range(5):
            p = np.asarray(hedge.act(), dtype=np.float64)
            if t > 0:
                row = next(r for r in rows if r["meta"]["seed"] == seed and r["meta"]["round"] == t + 1)
                record = loaded.records[rows.index(row)]
                assert record.prompt == row["prompt"] and record.prompt[-1]["content"].startswith("Round 1:")
                parsed = parse_distribution(record.completion[0]["content"], 3)
                assert parsed is not None and record.completion[0]["role"] == "assistant"
                np.testing.assert_allclose(parsed, p, atol=0.011)
            ell = env.loss_vector(t, past)
            past.append(p)
            a = int(np.argmax(p))
            hedge.update(Observation(t, action=a, loss=float(ell[a]), losses=ell))
    res = CliRunner().invoke(app, ["arena", "distill-data", "--seeds", "0"])
    assert isinstance(res.exception, ConfigError) and res.exception.field == "out"
    assert "give --out PATH (pairs for DPO), --sft PATH (demonstrations for SFT) or both" in str(res.exception)
