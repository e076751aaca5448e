"""The regret arena: textbook bounds of the classical agents, hand-checked bookkeeping, the CLI and resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from fault_helpers import run_cli
from preflab.arena import ArenaConfig, cce_gap, cumulative_regret, dynamic_regret, no_regret_test, run_arena
from preflab.arena.agents import Hedge, Observation, project_simplex
from preflab.arena.envs import duel_env, experts_env, game_env
from preflab.arena.metrics import band, duel_regret
from preflab.arena.runner import cell_path
from preflab.cli import app
from preflab.errors import ConfigError


def _final(summary, agent):
    return summary["agents"][agent]


# ----------------------------------------------------------------------------------------- hand-checked bookkeeping


def test_regret_bookkeeping_by_hand():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    losses = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    # costs 0.5, 0, 0 -> 0.5, 0.5, 0.5; best fixed: cumulative (1,0) (1,1) (2,1) -> 0, 1, 1
    assert cumulative_regret(probs, losses).tolist() == [0.5, -0.5, -0.5]
    # per-round minimum is 0 every round: dynamic regret = cumulative cost
    assert dynamic_regret(probs, losses).tolist() == [0.5, 0.5, 0.5]


def test_ftl_on_its_trap_by_hand():
    env = experts_env("ftl_trap", 2, 5, seed=0)
    assert env.losses.tolist() == [[0.5, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    s = run_arena(ArenaConfig(env="experts:ftl_trap", agents=["ftl"], horizon=5, seeds=1, n_actions=2))
    # FTL: ½·½ + 1 + 1 + 1 + 1 = 4.25; best action (1) pays 2 -> regret 2.25
    assert s["agents"]["ftl"]["regret"]["mean"][-1] == pytest.approx(2.25)


def test_adaptive_adversary_by_hand():
    s = run_arena(ArenaConfig(env="experts:adaptive", agents=["uniform"], horizon=40, seeds=1, n_actions=2))
    # uniform pays ½ per round; the adversary hits argmax of the uniform vector (action 0) every round
    assert _final(s, "uniform")["final_regret_mean"] == pytest.approx(20.0)
    s = run_arena(ArenaConfig(env="experts:adaptive", agents=["ftl"], horizon=5, seeds=1, n_actions=2))
    # FTL plays ½½, (0,1), (0,1), (0,1), ½½; the adversary answers the previous round's argmax:
    # losses (1,0) (1,0) (0,1) (0,1) (0,1): costs ½, 0, 1, 1, ½ against best-so-far 0, 0, 1, 2, 2
    assert _final(s, "ftl")["regret"]["mean"] == pytest.approx([0.5, 0.5, 0.5, 0.5, 1.0])


def test_duel_regret_and_winners():
    env = duel_env("condorcet", 3, 10, seed=0)
    assert env.regret_kind == "condorcet" and env.round_regret[env.winner] == 0.0
    p = np.eye(3)[[env.winner]]
    other = (env.winner + 1) % 3
    q = np.eye(3)[[other]]
    assert duel_regret(p, q, env.round_regret)[0] == pytest.approx((env.pref[env.winner, other] - 0.5) / 2)
    cyc = duel_env("cyclic", 4, 10, seed=0)
    assert cyc.winner is None and cyc.regret_kind == "copeland"
    # the 3-cycle's arms beat 2 of 3 others, the dominated arm none: Copeland regret 2/3 for it
    assert cyc.round_regret.tolist() == pytest.approx([0.0, 0.0, 0.0, 2 / 3])


def test_cce_gap_by_hand_and_equals_the_larger_average_regret():
    g = game_env("coordination", 2, seed=0)
    p = np.array([[1.0, 0.0], [1.0, 0.0]])
    q = np.array([[0.0, 1.0], [0.0, 1.0]])
    # mismatch (0, 1): both lose 1; the row player gains 0.5 by switching to 1, the column player 1 by switching to 0
    assert cce_gap(p, q, g.row_loss, g.col_loss).tolist() == pytest.approx([1.0, 1.0])
    rng = np.random.default_rng(0)
    g = game_env("random", 30, seed=3, n_actions=3)
    P, Q = rng.dirichlet(np.ones(3), 30), rng.dirichlet(np.ones(3), 30)
    r1 = cumulative_regret(P, Q @ g.row_loss.T)
    r2 = cumulative_regret(Q, P @ g.col_loss)
    expected = np.maximum(np.maximum(r1, r2) / np.arange(1, 31), 0)
    assert cce_gap(P, Q, g.row_loss, g.col_loss) == pytest.approx(expected)


def test_band_and_no_regret_test():
    b = band(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert b.mean == [2.0, 3.0]
    # t_{0.975, 1} = 12.706; sd = √2, se = 1
    assert b.hi[0] == pytest.approx(2.0 + 12.7062047, rel=1e-6)
    t = np.arange(1, 401)
    assert no_regret_test(3 * np.sqrt(t)).exponent == pytest.approx(0.5)
    assert no_regret_test(3 * np.sqrt(t)).verdict == "sublinear"
    assert no_regret_test(0.25 * t).verdict == "linear"
    assert no_regret_test(-np.ones(400)).verdict == "sublinear"
    # a short, nearly linear curve whose average does not keep falling is not called sublinear
    t15 = np.arange(1, 16)
    wobbly = no_regret_test(0.3 * t15 * (1 + 0.05 * (-1.0) ** t15))
    assert wobbly.trend_p > 0.05 and wobbly.verdict != "sublinear"


def test_project_simplex():
    assert project_simplex(np.array([0.3, 0.3, 0.3])) == pytest.approx([1 / 3] * 3)
    assert project_simplex(np.array([2.0, 0.0, -1.0])) == pytest.approx([1.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------------- textbook bounds


@pytest.mark.parametrize("kind", ["adversarial", "stochastic", "nonstationary", "ftl_trap", "lazy_trap", "adaptive"])
def test_hedge_meets_its_bound_on_every_sequence(kind):
    T, K = 400, 3
    s = run_arena(ArenaConfig(env=f"experts:{kind}", agents=["hedge", "ftrl"], horizon=T, seeds=4, n_actions=K))
    hedge, ftrl = (s["agents"][a]["regret"] for a in ("hedge", "ftrl"))
    assert max(hedge["mean"]) <= math.sqrt(T * math.log(K) / 2)  # the bound holds at every horizon t ≤ T
    assert ftrl["mean"][-1] <= math.sqrt(T * K)


def test_hedge_bound_holds_per_seed():
    T, K = 300, 4
    for seed in range(5):
        env = experts_env("adversarial", K, T, seed)
        h = Hedge()
        h.reset(K, T, np.random.default_rng(0))
        probs = []
        for t in range(T):
            probs.append(h.act())
            h.update(Observation(t, losses=env.losses[t]))
        assert cumulative_regret(np.array(probs), env.losses)[-1] <= math.sqrt(T * math.log(K) / 2)


def test_ftl_fails_where_hedge_does_not():
    s = run_arena(ArenaConfig(env="experts:ftl_trap", agents=["ftl", "hedge"], horizon=300, seeds=1, n_actions=2))
    assert _final(s, "ftl")["no_regret_test"]["verdict"] == "linear"
    assert _final(s, "ftl")["avg_regret"] == pytest.approx(0.5, abs=0.01)
    assert _final(s, "hedge")["no_regret_test"]["verdict"] == "sublinear"


def test_bandit_agents_are_sublinear():
    T, K = 2000, 3
    s = run_arena(
        ArenaConfig(env="bandit", agents=["exp3", "ucb", "thompson", "uniform"], horizon=T, seeds=3, n_actions=K)
    )
    assert _final(s, "exp3")["final_regret_mean"] <= math.sqrt(2 * T * K * math.log(K))
    gaps = [0.3, 0.6]  # means 0.2, 0.5, 0.8
    ucb_bound = sum(8 * math.log(T) / d for d in gaps) + (1 + math.pi**2 / 3) * sum(gaps)
    assert _final(s, "ucb")["final_regret_mean"] <= ucb_bound
    for agent in ("exp3", "ucb", "thompson"):
        assert _final(s, agent)["no_regret_test"]["verdict"] == "sublinear", agent
        assert _final(s, agent)["avg_regret"] < 0.2 * _final(s, "uniform")["avg_regret"], agent
    assert _final(s, "uniform")["no_regret_test"]["verdict"] == "linear"
    assert _final(s, "uniform")["avg_regret"] == pytest.approx(0.3)  # mean of (0, 0.3, 0.6)


@pytest.mark.parametrize("agent", ["rucb", "dts"])
def test_dueling_agents_are_sublinear_on_a_condorcet_bandit(agent):
    s = run_arena(ArenaConfig(env="duel:condorcet", agents=[agent, "uniform"], horizon=1500, seeds=3, n_actions=4))
    row = _final(s, agent)
    assert row["no_regret_test"]["verdict"] == "sublinear"
    assert row["final_regret_mean"] < 0.15 * _final(s, "uniform")["final_regret_mean"]


def test_hedge_self_play_approaches_a_cce():
    s = run_arena(ArenaConfig(env="game:prisoners", agents=["hedge"], horizon=500, seeds=2))
    gap = _final(s, "hedge")["cce_gap"]["mean"]
    assert gap[-1] < 0.05 and gap[-1] < gap[9]
    assert _final(s, "hedge")["final_row_probs"][1] > 0.9  # defection dominates


# ------------------------------------------------------------------------------------------------ bad input, CLI


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--env", "expertz"], "unknown environment 'expertz'"),
        (["--env", "experts:sideways"], "unknown experts kind"),
        (["--agents", "hedge,foo"], "unknown agent 'foo'"),
        (["--horizon", "0"], "horizon"),
        (["--seeds", "0"], "seeds"),
        (["--env", "bandit", "--agents", "hedge"], "needs full-information feedback"),
        (["--env", "duel", "--agents", "exp3"], "duel outcomes only"),
    ],
)
def test_bad_input_is_one_line_exit_2(monkeypatch, capsys, args, needle):
    code, line = run_cli(monkeypatch, capsys, "arena", "run", "--horizon", "3", *args)
    assert code == 2 and needle in line


def test_wrong_payoff_shape_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "pay.json"
    bad.write_text(json.dumps({"row": [[0, 1], [1, 0]], "col": [[0, 1, 0], [1, 0, 1]]}))
    code, line = run_cli(
        monkeypatch,
        capsys,
        "arena",
        "run",
        "--env",
        "game:custom",
        "--payoff",
        str(bad),
        "--agents",
        "hedge",
        "--horizon",
        "3",
    )
    assert code == 2 and "differ in shape" in line and "payoff" in line
    bad.write_text(json.dumps({"row": [0, 1], "col": [0, 1]}))
    code, line = run_cli(
        monkeypatch,
        capsys,
        "arena",
        "run",
        "--env",
        "game:custom",
        "--payoff",
        str(bad),
        "--agents",
        "hedge",
        "--horizon",
        "3",
    )
    assert code == 2 and "2-D" in line
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        game_env("custom", 3, 0, payoff={"row": [[0, 2], [1, 0]], "col": [[0, 1], [1, 0]]})


def test_cli_writes_results_and_resumes_per_cell(tmp_path):
    out = tmp_path / "run"
    args = [
        "arena",
        "run",
        "--env",
        "experts:stochastic",
        "--agents",
        "hedge,ftpl",
        "--horizon",
        "30",
        "--seeds",
        "3",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "hedge" in res.output and "R(30) mean" in res.output
    first = json.loads((out / "results.json").read_text())
    assert set(first["agents"]) == {"hedge", "ftpl"} and first["agents"]["ftpl"]["seeds"] == 3
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert oct((out / "results.json").stat().st_mode & 0o777) != oct(0o600)
    victim = cell_path(out, "ftpl", 1)
    before = victim.read_text()
    victim.unlink()
    cell_path(out, "hedge", 2).write_text('{"truncated')  # a damaged cell is played again
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(victim.read_text())["regret"] == json.loads(before)["regret"]
    again = json.loads((out / "results.json").read_text())["agents"]
    for agent in ("hedge", "ftpl"):
        assert again[agent]["regret"] == first["agents"][agent]["regret"]
    res = CliRunner().invoke(app, [*args[:-4], "--horizon", "31", "--seeds", "3", "--out", str(out)])
    assert res.exit_code != 0 and "other settings (horizon)" in str(res.exception)


def test_arena_list():
    res = CliRunner().invoke(app, ["arena", "list"])
    assert res.exit_code == 0 and "rucb" in res.output and "ftl_trap" in res.output
