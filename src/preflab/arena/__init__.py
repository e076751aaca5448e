"""The regret arena: online-learning environments, classical and language-model agents, regret bookkeeping.

See ``docs/arena.md``. Environments (:mod:`.envs`), classical agents (:mod:`.agents`), LM agents
(:mod:`.lm_agent`), metrics (:mod:`.metrics`), the regret-loss transformer (:mod:`.regret_loss`) and the
resumable runner (:mod:`.runner`, ``preflab arena run``).
"""

from .agents import AGENTS, Agent, Observation
from .envs import make_env
from .metrics import cce_gap, cumulative_regret, dynamic_regret, no_regret_test
from .runner import ArenaConfig, run_arena

__all__ = [
    "AGENTS",
    "Agent",
    "ArenaConfig",
    "Observation",
    "cce_gap",
    "cumulative_regret",
    "dynamic_regret",
    "make_env",
    "no_regret_test",
    "run_arena",
]
