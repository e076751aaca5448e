"""Play agents against an environment over seeds, one JSON record per (agent, seed) cell, resumable.

Layout of an arena run directory::

    OUT/config.json                 the settings (a resumed run must match them)
    OUT/cells/<agent>/seed<k>.json  one finished cell: per-round vectors, regret curves, agent stats
    OUT/results.json                the summary over seeds (rebuilt from the cells at the end)
    OUT/report.html                 the self-contained report with the regret plots

Every file is written atomically (temporary file, fsync, rename), so a run killed at any moment leaves only
whole cells; running the same command again skips finished cells and plays the missing ones. The seeds of
one agent are played in lockstep, so a language-model agent answers every seed's prompt for the round in one
batched sampler call (a resumed LM cell may therefore differ from an uninterrupted one: a prompt's sample
depends on its batch, see :mod:`preflab.generation.sampler`).

In a repeated game each agent name is a pairing: ``hedge`` is Hedge against Hedge (independent copies),
``llm_vs_hedge`` the LM as row player against Hedge.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..files import atomic_write_text
from . import metrics
from .agents import AGENTS, Agent, Observation, agent_names, check_agent
from .envs import DuelEnv, MatrixGame, check_horizon, check_prob, make_env, parse_env_name

LM_AGENTS = ("llm", "llm_summary")


@dataclass
class ArenaConfig:
    """Settings of one arena run."""

    env: str = "experts:adversarial"
    agents: list[str] = field(default_factory=lambda: ["hedge", "exp3"])
    horizon: int = 50
    seeds: int = 5
    n_actions: int = 3
    model: str = "smollm2-135m-instruct"
    temperature: float = 0.7
    payoff: dict | None = None
    regret_transformer: str | None = None
    """Path of a trained regret-loss transformer (``preflab.arena.regret_loss.save``) for the agent of that name."""

    def __post_init__(self) -> None:
        check_horizon(self.horizon)
        if self.seeds < 1:
            raise ConfigError(f"need at least one seed (got {self.seeds})", field="seeds")
        self.family, self.kind = parse_env_name(self.env)
        self.env = f"{self.family}:{self.kind}"
        if not self.agents:
            raise ConfigError("no agents given", field="agents")
        for name in self.agents:
            for part in self.players(name):
                if part not in agent_names():
                    import difflib

                    close = difflib.get_close_matches(part, agent_names(), n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise ConfigError(
                        f"unknown agent '{part}'{hint} (known: {', '.join(agent_names())})", field="agents"
                    )
                check_agent(part, self.family, _needs(part))
        if self.family == "game":  # build once so a bad payoff fails before anything runs
            make_env(self.env, horizon=self.horizon, seed=0, n_actions=self.n_actions, payoff=self.payoff)
        if "regret_transformer" in {p for n in self.agents for p in self.players(n)} and not self.regret_transformer:
            raise ConfigError(
                "agent 'regret_transformer' needs --regret-transformer PATH (a trained model)",
                field="regret_transformer",
            )

    def players(self, name: str) -> list[str]:
        if self.family != "game":
            return [name]
        parts = name.split("_vs_")
        if len(parts) > 2:
            raise ConfigError(f"a game pairing is 'a' or 'a_vs_b' (got '{name}')", field="agents")
        return parts * 2 if len(parts) == 1 else parts

    def to_dict(self) -> dict:
        d = asdict(self)
        d["env"] = self.env
        return d


def _needs(name: str) -> str:
    if name in LM_AGENTS:
        return "lm"
    if name == "regret_transformer":
        return "full"
    return AGENTS[name][0].needs


class AgentFactory:
    """Builds agents by name; the LM (loaded once, on first use) is shared by every LM agent."""

    def __init__(self, cfg: ArenaConfig, lm_backend=None) -> None:
        self.cfg, self._backend = cfg, lm_backend

    def backend(self):
        if self._backend is None:
            from ..models.loading import load_model, load_tokenizer
            from .lm_agent import LMBackend

            self._backend = LMBackend(
                load_model(self.cfg.model), load_tokenizer(self.cfg.model), temperature=self.cfg.temperature
            )
        return self._backend

    def make(self, name: str) -> Agent:
        if name in LM_AGENTS:
            from .lm_agent import LMAgent

            return LMAgent(self.backend(), "summary" if name == "llm_summary" else "raw", name=name)
        if name == "regret_transformer":
            from .regret_loss import RegretTransformerAgent, load

            return RegretTransformerAgent(load(self.cfg.regret_transformer))
        return AGENTS[name][0]()


def act_all(agents: list[Agent]) -> list:
    """Every agent's play for the round; agents sharing a batch group (an LM backend) are answered in one call."""
    out: list = [None] * len(agents)
    groups: dict[int, tuple[object, list[int]]] = {}
    for i, a in enumerate(agents):
        group = getattr(a, "batch_group", None)
        if group is None:
            out[i] = a.act()
        else:
            groups.setdefault(id(group), (group, []))[1].append(i)
    for group, idx in groups.values():
        for i, p in zip(idx, group.act_batch([agents[i] for i in idx]), strict=True):
            out[i] = p
    return out


def _rngs(seed: int, name: str) -> tuple[np.random.Generator, np.random.Generator]:
    tag = sum(ord(c) * 31**i for i, c in enumerate(name)) % (2**31)
    return np.random.default_rng([seed, tag, 1]), np.random.default_rng([seed, tag, 2])


def _reset(agent: Agent, K: int, T: int, rng, feedback: str, role: str = "") -> None:
    if agent.needs == "lm":
        agent.reset(K, T, rng, feedback=feedback, role=role)
    else:
        agent.reset(K, T, rng)


def play_single(cfg: ArenaConfig, name: str, seeds: list[int], factory: AgentFactory) -> list[dict]:
    """Play agent ``name`` on seeds ``seeds`` of an experts / bandit / dueling environment, in lockstep."""
    envs = [make_env(cfg.env, horizon=cfg.horizon, seed=s, n_actions=cfg.n_actions, payoff=cfg.payoff) for s in seeds]
    agents = [factory.make(name) for _ in seeds]
    rngs = [_rngs(s, name) for s in seeds]
    duel = isinstance(envs[0], DuelEnv)
    for env, agent, (agent_rng, _) in zip(envs, agents, rngs, strict=True):
        _reset(agent, env.n_actions, cfg.horizon, agent_rng, env.feedback)
    rec = [{"left": [], "right": [], "probs": [], "scored": [], "played": []} for _ in seeds]
    start = time.perf_counter()
    for t in range(cfg.horizon):
        plays = act_all(agents)
        for k, (env, agent, (_, play_rng)) in enumerate(zip(envs, agents, rngs, strict=True)):
            K = env.n_actions
            if duel:
                p, q = plays[k] if isinstance(plays[k], tuple) else (plays[k], plays[k])
                p, q = check_prob(p, K, agent.name), check_prob(q, K, agent.name)
                i, j = int(play_rng.choice(K, p=p)), int(play_rng.choice(K, p=q))
                won = bool(play_rng.uniform() < env.pref[i, j])
                rec[k]["left"].append(p)
                rec[k]["right"].append(q)
                rec[k]["played"].append([i, j, int(won)])
                agent.update(Observation(t, duel=(i, j, won)))
                continue
            p = check_prob(plays[k], K, agent.name)
            ell = env.loss_vector(t, rec[k]["probs"])
            a = int(play_rng.choice(K, p=p))
            full = env.feedback == "full" and agent.needs != "bandit"
            rec[k]["probs"].append(p)
            rec[k]["scored"].append(env.scored_vector(t, ell))
            rec[k]["played"].append(a)
            agent.update(Observation(t, action=a, loss=float(ell[a]), losses=ell if full else None))
    elapsed = time.perf_counter() - start
    cells = []
    for k, (s, env, agent) in enumerate(zip(seeds, envs, agents, strict=True)):
        cell = {
            "env": cfg.env,
            "agent": name,
            "seed": s,
            "horizon": cfg.horizon,
            "n_actions": env.n_actions,
            "description": env.description,
            "stats": agent.stats(),
            "elapsed_s": elapsed / len(seeds),
            "played": rec[k]["played"],
        }
        if duel:
            left, right = np.array(rec[k]["left"]), np.array(rec[k]["right"])
            cell.update(
                left=left.tolist(),
                right=right.tolist(),
                regret_kind=env.regret_kind,
                winner=env.winner,
                regret=metrics.duel_regret(left, right, env.round_regret).tolist(),
            )
        else:
            probs, scored = np.array(rec[k]["probs"]), np.array(rec[k]["scored"])
            cell.update(
                probs=probs.tolist(),
                scored=scored.tolist(),
                regret=metrics.cumulative_regret(probs, scored).tolist(),
                dynamic_regret=metrics.dynamic_regret(probs, scored).tolist(),
            )
        cells.append(cell)
    return cells


def play_game(cfg: ArenaConfig, name: str, seeds: list[int], factory: AgentFactory) -> list[dict]:
    """Play the pairing ``name`` in the repeated matrix game on ``seeds``, both players in lockstep."""
    games: list[MatrixGame] = [
        make_env(cfg.env, horizon=cfg.horizon, seed=s, n_actions=cfg.n_actions, payoff=cfg.payoff) for s in seeds
    ]
    row_name, col_name = cfg.players(name)
    rows, cols = [factory.make(row_name) for _ in seeds], [factory.make(col_name) for _ in seeds]
    rngs = [_rngs(s, name) for s in seeds]
    K1, K2 = games[0].n_actions
    for r, c, (agent_rng, _) in zip(rows, cols, rngs, strict=True):
        _reset(r, K1, cfg.horizon, agent_rng, "full", role="row")
        _reset(c, K2, cfg.horizon, agent_rng, "full", role="column")
    rec = [{"p": [], "q": [], "lr": [], "lc": []} for _ in seeds]
    start = time.perf_counter()
    for t in range(cfg.horizon):
        plays = act_all(rows + cols)
        n = len(seeds)
        for k, (g, r, c, (_, play_rng)) in enumerate(zip(games, rows, cols, rngs, strict=True)):
            p, q = check_prob(plays[k], K1, r.name), check_prob(plays[n + k], K2, c.name)
            lr, lc = g.loss_vectors(p, q)
            a, b = int(play_rng.choice(K1, p=p)), int(play_rng.choice(K2, p=q))
            r.update(Observation(t, action=a, loss=float(lr[a]), losses=None if r.needs == "bandit" else lr))
            c.update(Observation(t, action=b, loss=float(lc[b]), losses=None if c.needs == "bandit" else lc))
            for key, v in (("p", p), ("q", q), ("lr", lr), ("lc", lc)):
                rec[k][key].append(v)
    elapsed = time.perf_counter() - start
    cells = []
    for k, (s, g, r, c) in enumerate(zip(seeds, games, rows, cols, strict=True)):
        p, q, lr, lc = (np.array(rec[k][key]) for key in ("p", "q", "lr", "lc"))
        row_regret, col_regret = metrics.cumulative_regret(p, lr), metrics.cumulative_regret(q, lc)
        cells.append(
            {
                "env": cfg.env,
                "agent": name,
                "seed": s,
                "horizon": cfg.horizon,
                "n_actions": [K1, K2],
                "description": g.description,
                "elapsed_s": elapsed / len(seeds),
                "stats": {"row": r.stats(), "col": c.stats()},
                "row_probs": p.tolist(),
                "col_probs": q.tolist(),
                "row_regret": row_regret.tolist(),
                "col_regret": col_regret.tolist(),
                "regret": np.maximum(row_regret, col_regret).tolist(),
                "cce_gap": metrics.cce_gap(p, q, g.row_loss, g.col_loss).tolist(),
            }
        )
    return cells


def cell_path(out: Path, agent: str, seed: int) -> Path:
    return out / "cells" / agent / f"seed{seed}.json"


def _check_out(out: Path, cfg: ArenaConfig) -> None:
    from ..files import check_output_dir

    check_output_dir(out, "out")
    saved = out / "config.json"
    if saved.is_file():
        try:
            old = json.loads(saved.read_text())
        except json.JSONDecodeError:
            raise ConfigError(
                "is not valid JSON; remove it or use another --out", field=None, file=str(saved)
            ) from None
        mine = cfg.to_dict()
        diff = sorted(k for k in mine if k != "agents" and old.get(k) != mine[k])
        if diff:
            raise ConfigError(
                f"this directory holds an arena run with other settings ({', '.join(diff)}); use another --out",
                file=str(saved),
            )
        cfg_agents = list(dict.fromkeys([*old.get("agents", []), *cfg.agents]))
        mine["agents"] = cfg_agents
        atomic_write_text(saved, json.dumps(mine, indent=2))
    else:
        atomic_write_text(saved, json.dumps(cfg.to_dict(), indent=2))


def run_arena(cfg: ArenaConfig, out: Path | None = None, *, lm_backend=None, progress=None) -> dict:
    """Play every agent on every seed (skipping cells already in ``out``) and return the summary."""
    factory = AgentFactory(cfg, lm_backend)
    cells: dict[str, list[dict]] = {}
    if out is not None:
        out = Path(out)
        _check_out(out, cfg)
    play = play_game if cfg.family == "game" else play_single
    for name in cfg.agents:
        done, todo = [], []
        for s in range(cfg.seeds):
            path = cell_path(out, name, s) if out is not None else None
            if path is not None and path.is_file():
                try:
                    done.append(json.loads(path.read_text()))
                    continue
                except json.JSONDecodeError:
                    pass  # a damaged cell is played again
            todo.append(s)
        if progress:
            progress(name, len(done), len(todo))
        if todo:
            for cell in play(cfg, name, todo, factory):
                if out is not None:
                    atomic_write_text(cell_path(out, name, cell["seed"]), json.dumps(cell))
                done.append(cell)
        cells[name] = sorted(done, key=lambda c: c["seed"])
    summary = summarise(cfg, cells)
    if out is not None:
        atomic_write_text(out / "results.json", json.dumps(summary, indent=2))
    return summary


def summarise(cfg: ArenaConfig, cells: dict[str, list[dict]]) -> dict:
    """Per agent: regret band over seeds, the no-regret test, dynamic regret, CCE gap, LM parse failures."""
    rows = {}
    for name, cs in cells.items():
        R = np.array([c["regret"] for c in cs])
        b = metrics.band(R)
        test = metrics.no_regret_test(np.asarray(b.mean))
        row = {
            "agent": name,
            "seeds": len(cs),
            "regret": asdict(b),
            "final_regret_mean": b.mean[-1],
            "final_regret_ci": [b.lo[-1], b.hi[-1]],
            "avg_regret": b.mean[-1] / cfg.horizon,
            "no_regret_test": test.to_dict(),
            "elapsed_s": float(sum(c.get("elapsed_s", 0.0) for c in cs)),
        }
        if cs and "dynamic_regret" in cs[0]:
            d = metrics.band(np.array([c["dynamic_regret"] for c in cs]))
            row.update(dynamic_regret=asdict(d), final_dynamic_regret_mean=d.mean[-1])
        if cs and "cce_gap" in cs[0]:
            g = metrics.band(np.array([c["cce_gap"] for c in cs]))
            row.update(cce_gap=asdict(g), final_cce_gap_mean=g.mean[-1], final_cce_gap_ci=[g.lo[-1], g.hi[-1]])
            row["final_row_probs"] = np.mean([c["row_probs"][-1] for c in cs], axis=0).tolist()
            row["final_col_probs"] = np.mean([c["col_probs"][-1] for c in cs], axis=0).tolist()
        fails = [st for c in cs for st in _lm_stats(c["stats"])]
        if fails:
            n_fail, n = sum(f["parse_failures"] for f in fails), sum(f["rounds"] for f in fails)
            row.update(
                parse_failures=n_fail, lm_rounds=n, parse_failure_rate=n_fail / max(n, 1), parse_fallback="uniform"
            )
        rows[name] = row
    return {"config": cfg.to_dict(), "agents": rows}


def _lm_stats(stats: dict) -> list[dict]:
    if "parse_failures" in stats:
        return [stats]
    return [v for v in stats.values() if isinstance(v, dict) and "parse_failures" in v]
