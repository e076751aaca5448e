"""One-line training commands in TRL's style: ``preflab dpo --model M --dataset D [--beta 0.1 ...]``.

Each offline algorithm of the language-model trainer (``preflab algorithms``) gets a command of its name. The
flags map onto a run config built from the algorithm's shipped recipe (or the DPO recipe with the algorithm
swapped in when it has none); ``--set a.b=v`` reaches every other key and ``--print-config`` prints the config
instead of running it. TRL's own flag spellings (``--model_name_or_path``, ``--dataset_name``,
``--learning_rate`` ...) are accepted as aliases. ``preflab sft`` trains on demonstrations and has no β: its
``--beta`` is an error. After training, the run's HTML report is written; with
``--judge`` the trained policy is also evaluated against the initial one (``preflab eval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# flag value -> the config key it sets (None values are not set)
_KEYS = {
    "model": "model.name_or_path",
    "dataset": "data.path",
    "split": "data.split",
    "eval_split": "data.eval_split",
    "output_dir": "output_dir",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "grad_accum": "train.grad_accum",
    "max_steps": "train.max_steps",
    "epochs": "train.epochs",
    "max_length": "train.max_length",
    "seed": "seed",
    "beta": "objective.params.beta",
    "lora": "lora.enabled",
    "lora_r": "lora.r",
}


def oneline_algorithms() -> list[str]:
    """The algorithms that train on a fixed dataset on a language model: one command each."""
    from ..algorithms import ALGORITHMS
    from ..training.lm_algorithms import lm_schedule

    return [name for name, algo in ALGORITHMS.items() if algo.on_lm and lm_schedule(algo) == "offline"]


def config_overrides(algorithm: str, values: dict[str, Any], extra: list[str]) -> tuple[Path, list[str]]:
    """The base recipe of ``algorithm`` and the ``--set`` overrides the one-line flags stand for; ``--beta`` for
    an objective without a β (``sft``) is a one-line ConfigError."""
    from ..algorithms import get_algorithm
    from ..errors import ConfigError
    from ..objectives import get_objective
    from .recipes import recipe_paths

    if values.get("beta") is not None:
        objective = get_algorithm(algorithm).objective
        params = get_objective(objective).params.__dataclass_fields__
        if "beta" not in params:
            raise ConfigError(
                f"algorithm '{algorithm}' has no β (objective '{objective}' takes {', '.join(params)}); "
                "drop --beta (--set objective.params.KEY=VALUE sets its parameters)",
                field="beta",
            )

    paths = recipe_paths()
    sets: list[str] = []
    base = paths.get(algorithm) or next((path for path in paths.values() if _recipe_algorithm(path) == algorithm), None)
    if base is None:  # no recipe of its own: the DPO recipe's data, LoRA and loop settings
        base = paths["dpo"]
        sets += [f"algorithm={algorithm}", "objective.params={}", f"output_dir=runs/{algorithm}"]
    for name, key in _KEYS.items():
        value = values.get(name)
        if value is not None:
            sets.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    if values.get("eval_split") is not None:
        sets.append("data.eval_fraction=0")
    if values.get("max_steps") is None and values.get("epochs") is not None:
        sets.append("train.max_steps=null")
    return base, sets + list(extra)


def _recipe_algorithm(path: Path) -> str | None:
    """The ``algorithm:`` a recipe names (read from its top-level key)."""
    from ..config import load_yaml

    data = load_yaml(path.read_text(encoding="utf-8"))
    return data.get("algorithm") if isinstance(data, dict) else None


def _make_command(algorithm: str):  # noqa: ANN202  (a typer command)
    def command(
        model: str | None = typer.Option(
            None,
            "--model",
            "--model_name_or_path",
            "--model-name-or-path",
            help="Model: embedded name, HF id, local HF directory or .gguf.",
        ),
        dataset: str | None = typer.Option(
            None,
            "--dataset",
            "--dataset_name",
            "--dataset-name",
            help="Training data (preferences; demonstrations for sft): a file, a save_to_disk directory or a hub name.",
        ),
        split: str | None = typer.Option(None, "--split", "--dataset_train_split", help="Training split."),
        eval_split: str | None = typer.Option(
            None,
            "--eval-split",
            "--dataset_test_split",
            help="Held-out split (default: the recipe's held-out prompts).",
        ),
        output_dir: str | None = typer.Option(None, "--output-dir", "--output_dir", help="Run directory."),
        beta: float | None = typer.Option(None, "--beta", help="The objective's β (not for sft, which has none)."),
        lr: float | None = typer.Option(None, "--lr", "--learning_rate", "--learning-rate", help="Peak learning rate."),
        batch_size: int | None = typer.Option(
            None, "--batch-size", "--per_device_train_batch_size", help="Examples per micro-batch."
        ),
        grad_accum: int | None = typer.Option(
            None, "--grad-accum", "--gradient_accumulation_steps", help="Micro-batches per optimizer step."
        ),
        max_steps: int | None = typer.Option(None, "--max-steps", "--max_steps", help="Optimizer steps."),
        epochs: float | None = typer.Option(
            None, "--epochs", "--num_train_epochs", help="Passes over the data (clears the recipe's max_steps)."
        ),
        max_length: int | None = typer.Option(None, "--max-length", "--max_length", help="Prompt + completion tokens."),
        lora: bool | None = typer.Option(
            None,
            "--lora/--full",
            "--use_peft/--no_peft",
            help="LoRA adapters (the recipe's default) or full fine-tuning.",
        ),
        lora_r: int | None = typer.Option(None, "--lora-r", "--lora_r", help="LoRA rank."),
        seed: int | None = typer.Option(None, "--seed", help="The run's seed."),
        set_: list[str] = typer.Option([], "--set", help="Any other config key: a.b=value (repeatable)."),
        judge: str | None = typer.Option(
            None,
            "--judge",
            help="After training, evaluate against the initial "
            "policy with this judge (e.g. gold for preflab's task data).",
        ),
        eval_prompts: str | None = typer.Option(
            None, "--eval-prompts", help="Prompts file for --judge (default: held-out tasks of the default task suite)."
        ),
        print_config: bool = typer.Option(False, "--print-config", help="Print the run config and exit."),
    ) -> None:
        values = {name: value for name, value in locals().items() if name in _KEYS}
        run_oneline(algorithm, values, set_, judge=judge, eval_prompts=eval_prompts, print_config=print_config)

    command.__doc__ = (
        f"Train {algorithm} on a dataset in one line, TRL-style flags.\n\nThe {algorithm} recipe "
        "underneath (see --print-config); writes the run's report afterwards."
    )
    return command


def run_oneline(
    algorithm: str,
    values: dict[str, Any],
    extra: list[str],
    *,
    judge: str | None = None,
    eval_prompts: str | None = None,
    print_config: bool = False,
) -> None:
    """Build the config of a one-line command; print it, or train, optionally evaluate, and report."""
    from ..config import dump_config, load_config

    base, sets = config_overrides(algorithm, values, extra)
    if judge is not None:
        sets.append(f"eval.judge={judge}")
        sets.append(f"eval.prompts={eval_prompts}" if eval_prompts else "eval.suite=default")
    cfg = load_config(base, sets)
    if print_config:
        typer.echo(dump_config(cfg), nl=False)
        return
    from ..training import train

    result = train(cfg)
    last = result.train_metrics
    typer.echo(f"trained {result.steps} steps, loss {last.get('loss', float('nan')):.4f}", err=True)
    for key, value in sorted((result.eval_metrics or {}).items()):
        typer.echo(f"eval {key:<20} {value:.4f}", err=True)
    if judge is not None:
        from ..evaluation.runner import run_eval

        ev, path = run_eval(cfg)
        typer.echo(f"wrote {path}", err=True)
        if ev.win_rate is not None:
            typer.echo(f"win rate {ev.win_rate}", err=True)
    from ..evaluation.report import build_report

    typer.echo(f"report {build_report(cfg.output_dir).path}", err=True)
    if result.final_model_dir is not None:
        typer.echo(str(result.final_model_dir))


def register(app: typer.Typer) -> None:
    for name in oneline_algorithms():
        app.command(name, rich_help_panel="One-line training (TRL-style)")(_make_command(name))
