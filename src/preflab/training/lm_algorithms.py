"""The language-model trainer's side of the algorithm table (:mod:`preflab.algorithms`).

The trainer implements the table's data schedules in :data:`LM_SCHEDULES` (a fixed dataset, pairs sampled
and judged at every step, or rounds of sampling from π_t, judging and training) with the reference schedules
in :data:`LM_REFERENCES` (the initial policy, the previous round's policy π_t, or none). :func:`resolve_algorithm`
runs when a run config is validated and decides, from the table alone, what
the run trains:

* ``algorithm: NAME`` names a row of the table; ``objective.params`` override its parameters.
* An old config's ``objective: {name: NAME}`` (and no ``algorithm:``) selects the algorithm of the same name —
  ``dpo``, ``ipo``, ``kto``, ``online_dpo`` … are both — as TRL users expect a loss name to select that
  method; an objective that is no algorithm (``gpm``) is an error. Both given must agree, except for a row
  whose objective is open (``online_dpo``, ``iterative_dpo``: any objective of an offline-pairs row, e.g.
  ``objective: {name: ipo}`` for online or iterative IPO; :func:`preflab.algorithms.with_objective`), where
  ``objective.name`` picks the loss and keeps the row's reference schedule (none for SimPO and ORPO).
* An algorithm the trainer has no schedule for (``sppo``, ``inpo``, ``nash_md`` …) is a one-line
  :class:`~preflab.errors.ConfigError` naming the config field — never a silent downgrade to offline DPO.
* A data source the algorithm cannot train on (an offline dataset for an online algorithm, pairs for a
  ranking objective, unpaired labels for a pair objective) is an error naming the ``data`` field.
* The self-play policy-gradient algorithms (Nash-MD, Nash-MP, SPO: :mod:`preflab.training.selfplay`) take
  their length and prompts from ``iterative:`` as well (rounds × steps per round); ``iterative.reference`` and
  ``iterative.pairs`` do not apply to them, and SPO runs without a reference (its ``beta`` stays 0).
* An iterative algorithm's length is ``iterative.rounds`` × its steps per round (``train.max_steps`` is an
  error), its reference is π_t unless ``iterative.reference: initial`` (only for an objective the table also
  trains against a fixed reference: iterative DPO and its objective choices, e.g. ``objective: {name: ipo}``
  for iterative IPO), and ``reference.mode`` then only says how π_0 is kept (as it does for INPO and DNO, which
  take π_t as an anchor besides π_ref). Iterative SimPO and ORPO keep no reference: ``iterative.reference:
  initial`` or a ``reference.mode`` other than auto / none is an error.

Afterwards ``cfg.algorithm`` holds the algorithm and ``cfg.objective.name`` its objective;
:func:`configured_algorithm` gives the row the run trains (the open row with the chosen objective).
"""

from __future__ import annotations

from typing import Any

from .. import algorithms as table
from ..algorithms import ALGORITHMS, Algorithm, get_algorithm, with_objective
from ..errors import ConfigError

__all__ = [
    "LM_REFERENCES",
    "LM_SCHEDULES",
    "REWARD_HEADS",
    "SAMPLED",
    "check_data",
    "check_iterative",
    "configured_algorithm",
    "lm_schedule",
    "objective_params",
    "resolve_algorithm",
    "reward_head",
]

# The table's data schedules the LM trainer implements, and which of its schedules runs each.
LM_SCHEDULES: dict[str, str] = {
    table.OFFLINE_PAIRS: "offline",
    table.OFFLINE_UNPAIRED: "offline",
    table.OFFLINE_RANKINGS: "offline",
    table.OFFLINE_DEMONSTRATIONS: "offline",
    table.ONLINE_PAIRS: "online",
    table.ITERATIVE: "iterative",
    table.ROLLOUTS: "rollout",
    table.POLICY_GRADIENT: "self_play",
}
LM_REFERENCES: tuple[str, ...] = (
    table.FIXED,
    table.PREVIOUS_ITERATE,
    table.GEOMETRIC_MIXTURE,
    table.PROX_SNAPSHOTS,
    table.NONE,
)
# the trainer's schedules whose data the policy samples during training
SAMPLED = ("online", "iterative", "self_play", "rollout")

# Data kinds (preflab.data record kinds) each offline data schedule can train on, after conversion
# (rankings → pairs by data.rule → unpaired).
ACCEPTED_DATA_KINDS: dict[str, tuple[str, ...]] = {
    table.OFFLINE_PAIRS: ("pairs", "rankings"),
    table.OFFLINE_UNPAIRED: ("pairs", "rankings", "unpaired"),
    table.OFFLINE_RANKINGS: ("rankings",),
    table.OFFLINE_DEMONSTRATIONS: ("demonstrations",),
}
_FORMAT_DATA_KIND = {
    "preference": "pairs",
    "implicit_preference": "pairs",
    "unpaired": "unpaired",
    "rated": "rankings",
    "ranking": "rankings",
    "prompt_completion": "demonstrations",
    "messages": "demonstrations",
}


def lm_schedule(algo: Algorithm, field: str = "algorithm") -> str:
    """``"offline"``, ``"online"`` or ``"iterative"``: the trainer's schedule for ``algo``; a ConfigError when
    it has none."""
    if not algo.on_lm:
        where = (
            f"it runs on the exact testbed only (preflab testbed run -a {algo.name})"
            if algo.on_testbed
            else "it has no schedule yet"
        )
        raise ConfigError(
            f"algorithm '{algo.name}' ({algo.data} data, {algo.reference} reference) has no "
            f"language-model schedule yet; {where}",
            field=field,
        )
    return LM_SCHEDULES[algo.data]


def check_data(algo: Algorithm, data: Any) -> None:
    """The ``data:`` section gives ``algo`` something its data schedule can train on."""
    if algo.data not in ACCEPTED_DATA_KINDS:  # sampled during training: an offline dataset would go unused
        for key in ("path", "eval_path"):
            if getattr(data, key) is not None:
                raise ConfigError(
                    f"algorithm '{algo.name}' trains on {table.DATA_SCHEDULES[algo.data]}, not on an offline "
                    f"dataset; remove data.{key} (prompts come from online.tasks) or pick an offline algorithm",
                    field=f"data.{key}",
                )
        return
    accepted = ACCEPTED_DATA_KINDS[algo.data]
    if data.kind is not None and data.kind not in accepted:
        raise ConfigError(f"algorithm '{algo.name}' trains on {_one_of(accepted)}, not {data.kind}", field="data.kind")
    if data.kind is None and data.format is not None and _FORMAT_DATA_KIND[data.format] not in accepted:
        raise ConfigError(
            f"algorithm '{algo.name}' trains on {_one_of(accepted)}; format '{data.format}' holds "
            f"{_FORMAT_DATA_KIND[data.format]}",
            field="data.format",
        )


def check_iterative(algo: Algorithm, cfg: Any) -> None:
    """An iterative algorithm's run length, reference schedule and reference mode agree (module docstring)."""
    if LM_SCHEDULES.get(algo.data) == "self_play":
        _check_self_play(algo, cfg)
        return
    if algo.name == "xpo" and cfg.online.samples_per_prompt != 2:
        raise ConfigError(
            "algorithm 'xpo' pairs one answer of the policy with one of π_ref; set online.samples_per_prompt to 2",
            field="online.samples_per_prompt",
        )
    if LM_SCHEDULES.get(algo.data) != "iterative":
        return
    from ..objectives import get_objective

    anchored = get_objective(algo.objective).inputs == "iterative_pair"  # π_t as an anchor besides π_ref
    if cfg.train.max_steps is not None:
        raise ConfigError(
            f"algorithm '{algo.name}' trains iterative.rounds × iterative.steps_per_round steps; "
            "unset train.max_steps (set iterative.steps_per_round instead)",
            field="train.max_steps",
        )
    if algo.reference == table.NONE:  # iterative SimPO / ORPO: no reference model at all
        what = f"algorithm '{algo.name}' with objective '{algo.objective}' uses no reference policy"
        if cfg.iterative.reference == "initial":
            raise ConfigError(f"{what}; remove iterative.reference: initial", field="iterative.reference")
        if cfg.reference.mode not in ("auto", "none"):
            raise ConfigError(
                f"{what}; reference.mode '{cfg.reference.mode}' would keep one (set it to auto or none)",
                field="reference.mode",
            )
        return
    if cfg.iterative.reference == "initial":
        if not any(a.objective == algo.objective and a.reference == table.FIXED for a in ALGORITHMS.values()):
            raise ConfigError(
                f"algorithm '{algo.name}': objective '{algo.objective}' is defined against the "
                "previous iterate π_t; iterative.reference: initial is for iterative_dpo",
                field="iterative.reference",
            )
        if cfg.reference.mode == "cached":
            raise ConfigError(
                "an iterative schedule samples new completions every round; their π_0 log-probs "
                "cannot be cached in advance (use adapters_disabled or frozen_copy)",
                field="reference.mode",
            )
    elif cfg.reference.mode == "cached" and anchored:
        raise ConfigError(
            f"algorithm '{algo.name}' samples new completions every round; their π_ref log-probs "
            "cannot be cached in advance (use adapters_disabled or frozen_copy)",
            field="reference.mode",
        )
    elif cfg.reference.mode != "auto" and not anchored:
        raise ConfigError(
            f"algorithm '{algo.name}' takes the previous iterate π_t as its reference, scored once "
            "per round; reference.mode applies only to iterative.reference: initial (set it to auto)",
            field="reference.mode",
        )


def _check_self_play(algo: Algorithm, cfg: Any) -> None:
    if cfg.train.max_steps is not None:
        raise ConfigError(
            f"algorithm '{algo.name}' trains iterative.rounds × iterative.steps_per_round steps; "
            "unset train.max_steps (set iterative.steps_per_round instead)",
            field="train.max_steps",
        )
    if cfg.iterative.reference != "previous_iterate":
        raise ConfigError(
            f"algorithm '{algo.name}' plays against {table.REFERENCE_SCHEDULES[algo.reference]}; "
            "iterative.reference: initial is for iterative_dpo",
            field="iterative.reference",
        )
    if algo.reference == table.NONE and float({**algo.params, **cfg.objective.params}.get("beta", 0.0)) > 0:
        raise ConfigError(
            f"algorithm '{algo.name}' runs on language models without a reference policy; its "
            "KL-regularised form (beta > 0) runs on the exact testbed only",
            field="objective.params",
        )
    if (
        algo.reference == table.PROX_SNAPSHOTS
        and cfg.iterative.steps_per_round is not None
        and cfg.iterative.steps_per_round < 2
    ):
        raise ConfigError(
            f"algorithm '{algo.name}' splits each round into an extrapolation and an update half; "
            "it needs iterative.steps_per_round ≥ 2",
            field="iterative.steps_per_round",
        )


def _one_of(kinds: tuple[str, ...]) -> str:
    return kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"


# The reward heads (preflab.models.reward_heads) each reward-model algorithm can train; the first is its default.
REWARD_HEADS: dict[str, tuple[str, ...]] = {
    "bt_reward": ("scalar", "hl_gauss"),
    "gpm": ("gpm",),
    "maxmin_em": ("mixture",),
}


def reward_head(algo: Algorithm, cfg: Any) -> Any:
    """The :class:`~preflab.models.reward_heads.RewardHead` a reward-model algorithm trains (None for a policy):
    ``reward.head`` (default: the algorithm's), sized by the ``reward:`` section; GPM's τ and normalisation are
    its objective's, so the saved model's judge computes P(y ≻ y') as the loss did."""
    from ..models.reward_heads import HEADS

    if algo.model != table.REWARD:
        return None
    allowed = REWARD_HEADS.get(algo.name, ("scalar",))
    name = cfg.reward.head or allowed[0]
    if name not in allowed:
        raise ConfigError(
            f"algorithm '{algo.name}' trains a reward head of kind {_one_of(allowed)}, not '{name}'",
            field="reward.head",
        )
    r = cfg.reward
    if name == "hl_gauss":
        return HEADS[name](num_bins=r.num_bins, v_min=r.v_min, v_max=r.v_max, sigma_ratio=r.sigma_ratio)
    if name == "gpm":
        params = objective_params(algo, cfg.objective.params)
        return HEADS[name](dim=r.dim, tau=params.tau, normalize=params.normalize)
    if name == "mixture":
        return HEADS[name](groups=r.groups)
    return HEADS[name]()


def objective_params(algo: Algorithm, params: dict[str, Any]) -> Any:
    """The objective's params dataclass: the table's defaults for ``algo``, then the config's ``params``."""
    from .config import make_params

    try:
        return make_params(algo.objective, {**algo.params, **params})
    except ValueError as exc:
        raise ConfigError(str(exc), field="objective.params") from None


def configured_algorithm(cfg: Any) -> Algorithm:
    """The row a resolved config trains: ``cfg.algorithm``'s, with ``cfg.objective.name`` as its objective."""
    return with_objective(get_algorithm(cfg.algorithm), cfg.objective.name)


def resolve_algorithm(cfg: Any) -> Algorithm:
    """Resolve and check ``cfg.algorithm`` / ``cfg.objective`` (see the module docstring); fills both in."""
    named = cfg.objective.name
    if cfg.algorithm is not None:
        algo, field = get_algorithm(cfg.algorithm), "algorithm"
        if named is not None:
            algo = with_objective(algo, named)
    elif named is not None:
        if named not in ALGORITHMS:
            raise ConfigError(
                f"objective '{named}' is not an algorithm; set algorithm: (see `preflab algorithms`)",
                field="objective.name",
            )
        algo, field = ALGORITHMS[named], "objective.name"
    else:
        algo, field = ALGORITHMS["dpo"], "algorithm"
    lm_schedule(algo, field)
    check_data(algo, cfg.data)
    check_iterative(algo, cfg)
    if LM_SCHEDULES.get(algo.data) == "rollout":
        from .rollout_rewards import check_rollout

        r = cfg.rollout
        check_rollout(
            algo.name, r.group_size, r.prompts_per_rollout, cfg.train.batch_size, cfg.train.grad_accum, reward=r.reward
        )
    objective_params(algo, cfg.objective.params)
    if algo.model == table.REWARD:
        reward_head(algo, cfg)
    elif cfg.reward.head is not None:
        raise ConfigError(
            f"algorithm '{algo.name}' trains a policy; reward.head is for reward-model algorithms "
            f"({', '.join(REWARD_HEADS)})",
            field="reward.head",
        )
    # Plain attribute writes: assignment would re-run this validation (validate_assignment).
    cfg.__dict__["algorithm"] = algo.name
    cfg.objective.__dict__["name"] = algo.objective
    return algo
