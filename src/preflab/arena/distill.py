"""Algorithm distillation data: preference pairs that teach an LM agent to answer like a no-regret algorithm.

A teacher (Hedge by default) plays an experts environment on training seeds; at every round after the first,
the LM agent's own prompt for that history (:class:`preflab.arena.lm_agent.LMAgent`, same rules, same worked
first round, same history) becomes a pair in TRL's conversational layout: ``chosen`` is the teacher's
distribution written as the agent must answer (``[0.73, 0.27]``), ``rejected`` the same weights with the
actions ordered the other way round (the most weight on the action with the *most* cumulative loss) — the
better-vs-worse actions of DPO-style algorithm distillation. Rounds where the teacher is (near) uniform teach
no preference and are skipped. Train with ``preflab train recipes/dpo.yaml --set data.path=PAIRS``; evaluate
with ``preflab arena run --agents llm --model OUTPUT_DIR/final`` on other seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .agents import AGENTS, Observation
from .envs import LossEnv, make_env
from .lm_agent import LMAgent, _fmt


class _NoBackend:
    """LMAgent needs a backend only to act; building prompts needs none."""


def distillation_pairs(
    env: str,
    seeds: list[int],
    horizon: int,
    n_actions: int,
    teacher: str = "hedge",
    variant: str = "raw",
    min_gap: float = 0.05,
) -> list[dict]:
    if teacher not in AGENTS or AGENTS[teacher][0].needs != "full":
        raise ConfigError(f"the teacher must be a full-information agent (got '{teacher}')", field="teacher")
    rows = []
    for seed in seeds:
        e = make_env(env, horizon=horizon, seed=seed, n_actions=n_actions)
        if not isinstance(e, LossEnv) or e.feedback != "full":
            raise ConfigError("distillation data comes from experts environments", field="env")
        t_agent = AGENTS[teacher][0]()
        t_agent.reset(e.n_actions, horizon, np.random.default_rng(seed))
        student = LMAgent(_NoBackend(), variant)
        student.reset(e.n_actions, horizon, np.random.default_rng(seed), feedback="full")
        past: list[np.ndarray] = []
        cum = np.zeros(e.n_actions)
        for t in range(horizon):
            p = np.asarray(t_agent.act(), dtype=np.float64)
            if t > 0 and p.max() - p.min() >= min_gap:
                order = np.argsort(cum)  # best (least cumulative loss) first
                worse = np.empty_like(p)
                worse[order] = np.sort(p)  # least weight on the best action, most on the worst
                rows.append(
                    {
                        "prompt": student.prompt(),
                        "chosen": [{"role": "assistant", "content": _fmt(p)}],
                        "rejected": [{"role": "assistant", "content": _fmt(worse)}],
                        "meta": {"env": e.name, "seed": seed, "round": t + 1, "teacher": teacher},
                    }
                )
            ell = e.loss_vector(t, past)
            past.append(p)
            cum += ell
            obs = Observation(t, action=int(np.argmax(p)), loss=float(ell[int(np.argmax(p))]), losses=ell)
            t_agent.update(obs)
            student.update(obs)
    return rows


def write_pairs(rows: list[dict], path: str | Path) -> Path:
    from ..files import atomic_write_text

    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
