"""What a run's config means, decided before anything is built: the algorithm's objective and its parameters,
the data kind the objective trains on, mixed precision, the reference mode and the trackers.

Pure decisions from the config (and the device); nothing here loads a model or reads data. The objects are
constructed in :mod:`preflab.training.build`, which asks this module what to construct.
"""

from __future__ import annotations

from typing import Any

import torch

from ..algorithms import Algorithm
from ..errors import ConfigError
from ..objectives import ObjectiveSpec, get_objective
from .lm_algorithms import SAMPLED, configured_algorithm, objective_params

# The data kind (preflab.data: a record kind, or prompts for sampled schedules) each objective input kind
# (ObjectiveSpec.inputs) trains on.
DATA_KIND_OF_INPUTS = {
    "pair": "pairs",
    "unpaired": "unpaired",
    "iterative_pair": "pairs",
    "reward_pair": "pairs",
    "samples": "pairs",
    "xpo_pair": "pairs",
    "ranking": "rankings",
    "rollout": "prompts",
    "preference_embedding": "pairs",
    "group_pairs": "pairs",
    "demonstration": "demonstrations",
}


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off: a CUDA GPU with bf16, or a CPU whose bf16 matmuls beat its fp32 ones
    (:func:`preflab.models.bf16.cpu_bf16_pays`: AVX-512 BF16 or AMX, and a timed probe)."""
    from ..models.bf16 import bf16_pays

    return bf16_pays(device)


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    if setting == "auto":
        return bf16_supported(device)
    return bool(setting)


TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_trackers(names: list[str]) -> None:
    """Every requested tracker's package is installed (else a ConfigError saying what to install)."""
    import importlib.util

    for name in names:
        if not any(importlib.util.find_spec(pkg) for pkg in TRACKER_PACKAGES[name]):
            raise ConfigError(
                f"tracker '{name}' needs the package '{TRACKER_PACKAGES[name][0]}' "
                f"(pip install {TRACKER_PACKAGES[name][0]})",
                field="train.report_to",
            )


def reference_mode(setting: str, spec: ObjectiveSpec, lora: bool, schedule: str) -> str:
    """Resolve ``reference.mode`` (see :mod:`preflab.models.policy`)."""
    if not spec.needs_ref:
        return "none"
    mode = setting
    if mode == "auto":
        mode = "adapters_disabled" if lora else "frozen_copy"
    if mode == "none":
        raise ConfigError(f"objective '{spec.name}' needs a reference policy", field="reference.mode")
    if mode == "adapters_disabled" and not lora:
        raise ConfigError(
            "adapters_disabled needs lora.enabled: true (full fine-tuning has no adapters)", field="reference.mode"
        )
    if mode == "cached" and schedule in SAMPLED:
        raise ConfigError(
            f"an {schedule} schedule samples new completions as it trains; their reference log-probs "
            "cannot be cached in advance (use adapters_disabled or frozen_copy)",
            field="reference.mode",
        )
    return mode


def run_reference(cfg: Any, spec: ObjectiveSpec, params: Any, schedule: str) -> tuple[str, bool, bool]:
    """The run's reference: ``(mode, previous_iterate, anchored)``. ``previous_iterate``: each round's π_t is the
    reference; ``anchored``: π_t is an anchor *and* π_ref is kept as ``mode`` says (INPO, DNO)."""
    # an objective without a reference (iterative SimPO, ORPO) keeps none: π_t is not scored
    previous_iterate = schedule == "iterative" and cfg.iterative.reference == "previous_iterate" and spec.needs_ref
    anchored = previous_iterate and spec.inputs == "iterative_pair"
    mode = (
        "previous_iterate"
        if previous_iterate and not anchored
        else reference_mode(cfg.reference.mode, spec, cfg.lora.enabled, schedule)
    )
    if schedule == "rollout" and params.beta == 0 and params.kl_target is None and cfg.reference.mode == "auto":
        mode = "none"  # no KL term: no reference to keep (TRL's GRPO default, β = 0)
    return mode, previous_iterate, anchored


def resolve_objective(cfg: Any) -> tuple[Algorithm, ObjectiveSpec, Any]:
    """The run's row of the algorithm table, its objective and the objective's parameters."""
    algo = configured_algorithm(cfg)  # an open row (online_dpo) with the objective the config chose
    return algo, get_objective(algo.objective), objective_params(algo, cfg.objective.params)
