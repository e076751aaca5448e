"""Over-optimisation along a training run: each of its checkpoints scored on held-out prompts.

The best-of-n curve (:mod:`.best_of_n`) optimises against a proxy without training; a run optimised against a
proxy (GRPO or PPO with a ``reward_model`` judge, online DPO judged by one) traces its own curve through its
checkpoints. For the initial policy (step 0) and every intact checkpoint of ``RUN_DIR/checkpoints/``:

1. the policy at that step (the run's config rebuilds the model and its LoRA adapters, the checkpoint's
   ``model.safetensors`` fills the trainable weights) answers held-out prompts of a task suite, ``k`` samples
   a prompt at temperature 1;
2. KL(π‖π_0) is estimated from those samples against the run's base model (k1, cluster-robust SE over prompts:
   :func:`preflab.evaluation.lm.sample_kl`);
3. the proxy reward model(s) and the tasks' gold scorers score every answer; each is averaged per prompt, and
   the point is the mean over prompts with its standard error.

Held-out means: drawn from the suite with their own seed, and any prompt the run trained on (its
``online.tasks`` prompts, and the prompts of ``data.path`` when it has one) left out. The points go through
:func:`preflab.evaluation.overoptimization.overoptimisation` with Gao et al.'s RL form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from .overoptimization import OverOptPoint


@dataclass
class HeldOut:
    """The held-out tasks and how many drawn tasks were dropped because the run trained on their prompts."""

    tasks: list[Any]
    dropped: int


def run_config(run_dir: Path) -> Any:
    """The run's config (``RUN_DIR/config.yaml``), a one-line error when there is none."""
    from ..config import load_config

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no config.yaml)", field="run")
    return load_config(path, [])


def training_prompts(cfg: Any) -> set[str]:
    """repr of every prompt the run could have trained on: its task suite's prompts and its data's prompts."""
    from ..feedback.tasks import get_suite

    seen = {repr(t.prompt) for t in get_suite(cfg.online.tasks).tasks(cfg.online.num_prompts, seed=cfg.seed)}
    if getattr(cfg.data, "path", None) and Path(cfg.data.path).exists():
        from ..data.load import load_preferences

        seen |= {repr(r.prompt) for r in load_preferences(cfg.data.path, on_bad_row="skip").records}
    return seen


def held_out_tasks(cfg: Any, suite: str, n: int, seed: int) -> HeldOut:
    """``n`` tasks of ``suite`` (drawn with ``seed``) whose prompts the run never trained on."""
    from ..feedback.tasks import get_suite

    trained = training_prompts(cfg)
    drawn = get_suite(suite).tasks(n, seed=seed)
    kept = [t for t in drawn if repr(t.prompt) not in trained]
    if not kept:
        raise DataError(f"every one of the {n} prompts drawn from suite '{suite}' was a training prompt", field="seed")
    return HeldOut(kept, len(drawn) - len(kept))


def run_checkpoints(run_dir: Path) -> list[tuple[int, Path | None]]:
    """(step, checkpoint dir) of the initial policy (``None``) and every intact checkpoint, by step."""
    from ..training.checkpoint import check_checkpoint, list_checkpoints

    found = [(step, path) for step, path in list_checkpoints(run_dir / "checkpoints") if check_checkpoint(path) is None]
    if not found:
        raise DataError(
            "the run has no intact checkpoint (train with train.save_every and a train.keep_last that keeps them)",
            file=str(run_dir / "checkpoints"),
        )
    return [(0, None), *found]


def _mean_se(per_prompt: Sequence[float]) -> tuple[float, float]:
    n = len(per_prompt)
    mean = sum(per_prompt) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in per_prompt) / (n - 1)
    return mean, math.sqrt(var / n)


def _per_prompt(values: Sequence[float], prompt_index: Sequence[int], n_prompts: int) -> list[float]:
    sums, counts = [0.0] * n_prompts, [0] * n_prompts
    for v, i in zip(values, prompt_index, strict=True):
        sums[i] += float(v)
        counts[i] += 1
    return [s / c for s, c in zip(sums, counts, strict=True) if c]


def checkpoint_points(
    run_dir: Path,
    tasks: Sequence[Any],
    proxy: Any,
    *,
    n_per_prompt: int = 2,
    max_new_tokens: int = 64,
    seed: int = 0,
    batch_size: int = 16,
    bf16: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> list[OverOptPoint]:
    """One :class:`OverOptPoint` per checkpoint of ``run_dir`` (step 0 = the initial policy): KL to π_0, proxy and
    gold reward of its answers to ``tasks`` (means over prompts with SEs). ``proxy.score_batch(tasks, texts)``
    gives the proxy rewards."""
    import torch

    from ..models import load_model
    from ..models.policy import load_trainable_state_dict, trainable_state_dict
    from ..training.build import load_policy
    from ..training.rundir import fork_weights
    from .lm import sample_kl

    cfg = run_config(run_dir)
    checkpoints = run_checkpoints(run_dir)
    policy, tok = load_policy(cfg)
    base = load_model(
        cfg.model.name_or_path, dtype=cfg.model.dtype, trust_remote_code=cfg.model.trust_remote_code
    ).eval()
    initial = {k: v.clone() for k, v in trainable_state_dict(policy).items()}
    prompts = [t.prompt for t in tasks]
    points = []
    for step, path in checkpoints:
        weights = initial if path is None else fork_weights(path)
        wanted = set(initial)
        try:  # a PPO checkpoint may carry more than the policy (nothing else is read)
            load_trainable_state_dict(policy, {k: v for k, v in weights.items() if k in wanted})
        except KeyError as exc:
            raise DataError(f"the checkpoint does not fit the run's model: {exc.args[0]}", file=str(path)) from None
        policy.eval()
        with torch.no_grad():
            kl, samples = sample_kl(
                policy,
                base,
                tok,
                prompts,
                n_per_prompt=n_per_prompt,
                max_new_tokens=max_new_tokens,
                seed=seed,
                batch_size=batch_size,
                bf16=bf16,
            )
        answered = [tasks[i] for i in samples.prompt_index]
        gold = [t.score(text) for t, text in zip(answered, samples.texts, strict=True)]
        rewards = list(proxy.score_batch(answered, samples.texts))
        if len(rewards) != len(gold) or not all(math.isfinite(float(r)) for r in rewards):
            raise DataError(f"the proxy returned {len(rewards)} rewards (some not finite) for {len(gold)} answers")
        g, g_se = _mean_se(_per_prompt(gold, samples.prompt_index, len(tasks)))
        p, p_se = _mean_se(_per_prompt(rewards, samples.prompt_index, len(tasks)))
        points.append(OverOptPoint(step=step, kl=max(kl.kl, 0.0), proxy=p, gold=g, proxy_se=p_se, gold_se=g_se))
        log(f"step {step:>6}  KL {kl.kl:7.3f} ± {kl.se:.3f}  proxy {p:+.4f} ± {p_se:.4f}  gold {g:.4f} ± {g_se:.4f}")
    del base, policy
    return points


__all__ = ["HeldOut", "checkpoint_points", "held_out_tasks", "run_checkpoints", "run_config", "training_prompts"]
