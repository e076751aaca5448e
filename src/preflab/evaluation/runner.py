"""``preflab eval CONFIG.yaml``: run the ``eval`` section of a config and write ``RUN_DIR/eval/<name>.json``.

Resolves the two policies (the run's final model against the initial one by default), the held-out
prompts (a prompts file, or tasks drawn from a task suite), and the judge (by name, from the feedback
lab), then calls :func:`evaluate_policies` and, when ``eval.pairs`` is set, ranking accuracy.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, DataError, ModelNotFoundError
from .answers import LabeledPrompt
from .policies import EvalSampling, evaluate_policies, pair_ranking_accuracy
from .result import EvalResult

FINAL_MODEL_DIRS = ("final", "final_model")


def resolve_policy_path(cfg: RunConfig) -> str:
    """``eval.policy``, else the run's final model directory, else the configured model itself."""
    if cfg.eval.policy:
        return cfg.eval.policy
    for name in FINAL_MODEL_DIRS:
        path = Path(cfg.output_dir) / name
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return str(path)
    return cfg.model.name_or_path


def load_prompts(path: str | Path, limit: int | None = None) -> list[Any]:
    """Held-out prompts from a ``.txt`` file (one per line) or ``.jsonl`` (field ``prompt``).

    A JSONL row with a known task ``family`` and its ``params`` (as the feedback lab's samples files
    hold them) becomes a task, so gold judges can score it; a row with only a ``family`` and/or ``group``
    label is a :class:`~preflab.evaluation.answers.LabeledPrompt` (results per family / per group).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("prompts file not found", file=str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix != ".jsonl":
        prompts: list[Any] = [ln for ln in lines if ln.strip()]
        return prompts[:limit] if limit else prompts
    prompts = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", file=str(path), line=lineno) from None
        if not isinstance(row, dict) or "prompt" not in row:
            raise DataError("a prompt row needs a 'prompt' field", file=str(path), line=lineno, field="prompt")
        prompts.append(_as_task(row, str(path), lineno))
        if limit and len(prompts) >= limit:
            break
    return prompts


def _as_task(row: dict, file: str, line: int) -> Any:
    """A prompt row as a task (family + params), a labelled plain prompt, or the plain prompt itself."""
    task = row.get("task") if isinstance(row.get("task"), dict) else row
    if "params" in task and "family" in task:
        from ..feedback.tasks.base import task_from_dict

        return task_from_dict(task, file=file, line=line)
    prompt = _checked_prompt(row["prompt"], file, line)
    family, group = (_label(row, key, file, line) for key in ("family", "group"))
    if family is None and group is None:
        return prompt
    return LabeledPrompt(prompt, family, group)


def _checked_prompt(value: Any, file: str, line: int) -> Any:
    """A prompt the sampler can take: a non-empty string or chat message list."""
    from ..data.fields import BadRow, check_text

    try:
        return check_text(value, "prompt")
    except BadRow as bad:
        raise DataError(bad.message, file=file, line=line, field="prompt") from None


def _label(row: dict, key: str, file: str, line: int) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DataError(f"'{key}' must be a string label, not {type(value).__name__}", file=file, line=line, field=key)
    return str(value)


def suite_prompts(name: str, n: int, seed: int) -> list[Any]:
    """``n`` held-out tasks of a task suite (drawn with a seed distinct from the training draw)."""
    try:
        from ..feedback.tasks.suites import get_suite
    except ImportError:
        raise ConfigError("task suites need preflab.feedback.tasks", field="eval.suite") from None
    return get_suite(name).tasks(n, seed=seed)


def resolve_judge(name: str, args: dict[str, Any], prompts: list | None = None):
    """A judge by name from the feedback lab's ``make_judge``; task prompts are handed to it (gold judges)."""
    try:
        from ..feedback import make_judge
    except ImportError:
        raise ConfigError(
            f"judge '{name}': this install has no judge factory (preflab.feedback.make_judge)", field="eval.judge"
        ) from None
    tasks = [p for p in prompts or [] if hasattr(p, "score") and hasattr(p, "prompt")]
    return make_judge(name, tasks=tasks, **args) if tasks else make_judge(name, **args)


def run_eval(
    cfg: RunConfig, *, out_dir: str | Path | None = None, prompts: list | None = None, judge=None
) -> tuple[EvalResult, Path]:
    """Evaluate ``cfg.eval``'s policy against its reference; save and return the result and its path."""
    from ..models import load_model, load_tokenizer
    from ..models.loading import resolve_model

    ev = cfg.eval
    if prompts is None:
        if ev.prompts:
            prompts = load_prompts(ev.prompts, ev.n_prompts)
        elif ev.suite:
            prompts = suite_prompts(ev.suite, ev.n_prompts, seed=cfg.seed + 1_000_003)
        else:
            raise ConfigError("set eval.prompts (a prompts file) or eval.suite (a task suite)", field="eval.prompts")
    judge = judge if judge is not None else resolve_judge(ev.judge, ev.judge_args, prompts)
    policy_path = resolve_policy_path(cfg)
    reference_path = ev.reference or cfg.model.name_or_path
    mc = cfg.model
    try:  # a saved policy directory usually carries its tokenizer; else the base model's
        tokenizer = load_tokenizer(policy_path, trust_remote_code=mc.trust_remote_code)
    except ModelNotFoundError:
        tokenizer = load_tokenizer(mc.name_or_path, trust_remote_code=mc.trust_remote_code)

    def load(path: str):
        return load_model(path, dtype=mc.dtype, trust_remote_code=mc.trust_remote_code, device=mc.device)

    resolve_model(reference_path)  # a reference that is not there fails now, not after the policy has sampled
    # loaders: the policy is let go before the reference is loaded (and again for eval.pairs' ranking accuracy)
    policy, reference = partial(load, policy_path), partial(load, reference_path)
    sampling = EvalSampling(ev.max_new_tokens, ev.temperature, ev.top_p, cfg.seed, ev.batch_size)
    result = evaluate_policies(
        policy,
        reference,
        tokenizer,
        prompts,
        judge,
        sampling,
        kl=ev.kl,
        kl_samples_per_prompt=ev.kl_samples_per_prompt,
        length_unit=ev.length_unit,
        bf16=ev.bf16,
        both_orders=ev.both_orders,
        length_control=ev.length_control,
        null_check=ev.null_check,
        null_threshold=ev.null_threshold,
        confidence=ev.confidence,
        n_bootstrap=ev.n_bootstrap,
        lc_bootstrap=ev.lc_bootstrap,
        seed=cfg.seed,
        name=ev.name,
        a_name=Path(policy_path).name or policy_path,
        b_name=Path(reference_path).name or reference_path,
        keep_samples=ev.keep_samples,
    )
    if ev.pairs:
        from ..data import load_preferences

        pairs = load_preferences(ev.pairs, kind="pairs").records
        result.ranking = pair_ranking_accuracy(
            policy, reference, tokenizer, pairs, beta=ev.beta, batch_size=ev.batch_size, bf16=ev.bf16
        )
    result.meta.update(
        {
            "policy": policy_path,
            "reference": reference_path,
            "seed": cfg.seed,
            "eval_config": ev.model_dump(mode="json"),
        }
    )
    target = Path(out_dir) if out_dir is not None else Path(cfg.output_dir) / "eval"
    return result, result.save(target / f"{ev.name}.json")
