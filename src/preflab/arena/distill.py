"""Algorithm distillation data: rows that teach an LM agent to answer like a no-regret algorithm.

A teacher (Hedge by default) plays an experts environment on training seeds; at every round after the first,
the LM agent's own prompt for that history (:class:`preflab.arena.lm_agent.LMAgent`, same rules, same worked
first round, same history) becomes a training row in TRL's conversational layout, with the teacher's
distribution written as the agent must answer (``[0.73, 0.27]``, what :func:`~preflab.arena.lm_agent.
parse_distribution` reads back):

* :func:`distillation_pairs` (DPO): ``chosen`` is the teacher's answer, ``rejected`` the same weights with the
  actions ordered the other way round (the most weight on the action with the *most* cumulative loss) — the
  better-vs-worse actions of DPO-style algorithm distillation. Rounds where the teacher is (near) uniform
  teach no preference and are skipped. Train with ``preflab train recipes/dpo.yaml --set data.path=PAIRS``.
* :func:`distillation_demonstrations` (SFT, Laskin et al. 2022): ``completion`` is the teacher's answer at
  every round after the first, near-uniform ones included (imitation needs them too). Train with
  ``preflab train recipes/sft.yaml --set data.path=DEMOS``.

Evaluate with ``preflab arena run --agents llm --model OUTPUT_DIR/final`` on other seeds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .agents import AGENTS, Observation
from .envs import LossEnv, make_env
from .lm_agent import LMAgent, _fmt


class _NoBackend:
    """LMAgent needs a backend only to act; building prompts needs none."""


def teacher_rounds(
    env: str, seeds: list[int], horizon: int, n_actions: int, teacher: str = "hedge", variant: str = "raw"
) -> Iterator[tuple[list[dict[str, str]], np.ndarray, np.ndarray, dict]]:
    """For every round after the first of every seed's trajectory: (the LM agent's prompt, the teacher's
    distribution, the actions' cumulative losses so far, the row's ``meta``)."""
    if teacher not in AGENTS or AGENTS[teacher][0].needs != "full":
        raise ConfigError(f"the teacher must be a full-information agent (got '{teacher}')", field="teacher")
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
            if t > 0:
                meta = {"env": e.name, "seed": seed, "round": t + 1, "teacher": teacher}
                yield student.prompt(), p, cum.copy(), meta
            ell = e.loss_vector(t, past)
            past.append(p)
            cum += ell
            obs = Observation(t, action=int(np.argmax(p)), loss=float(ell[int(np.argmax(p))]), losses=ell)
            t_agent.update(obs)
            student.update(obs)


def distillation_pairs(
    env: str,
    seeds: list[int],
    horizon: int,
    n_actions: int,
    teacher: str = "hedge",
    variant: str = "raw",
    min_gap: float = 0.05,
) -> list[dict]:
    """Preference pairs (DPO): the teacher's answer against its weights on the worse actions (module doc)."""
    rows = []
    for prompt, p, cum, meta in teacher_rounds(env, seeds, horizon, n_actions, teacher, variant):
        if p.max() - p.min() < min_gap:
            continue
        order = np.argsort(cum)  # best (least cumulative loss) first
        worse = np.empty_like(p)
        worse[order] = np.sort(p)  # least weight on the best action, most on the worst
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": _fmt(p)}],
                "rejected": [{"role": "assistant", "content": _fmt(worse)}],
                "meta": meta,
            }
        )
    return rows


def distillation_demonstrations(
    env: str, seeds: list[int], horizon: int, n_actions: int, teacher: str = "hedge", variant: str = "raw"
) -> list[dict]:
    """Demonstrations (SFT): the LM agent's prompt and the teacher's answer at every round after the first."""
    return [
        {"prompt": prompt, "completion": [{"role": "assistant", "content": _fmt(p)}], "meta": meta}
        for prompt, p, _, meta in teacher_rounds(env, seeds, horizon, n_actions, teacher, variant)
    ]


def write_pairs(rows: list[dict], path: str | Path) -> Path:
    """Write rows (pairs or demonstrations) as JSONL, atomically."""
    from ..files import atomic_write_text

    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
