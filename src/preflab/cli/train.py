"""``preflab train CONFIG.yaml [--set k=v ...]``: run the training loop of a recipe."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

err_console = Console(stderr=True)


def train_cmd(
    config: Path = typer.Argument(..., help="YAML run config (see recipes/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: a.b=value (repeatable)."),
    fork: bool = typer.Option(
        False,
        "--fork",
        help="Start a new run from the latest checkpoint's weights in "
        "OUTPUT_DIR (the old run moves to OUTPUT_DIR/history/), e.g. after changing train.lr.",
    ),
) -> None:
    """Train a policy (or, with algorithm: bt_reward / gpm / maxmin_em, a reward model) with the config's objective,
    data and schedule; writes OUTPUT_DIR/{metrics.jsonl,
    checkpoints/, final/, provenance.json}. With train.resume: true a run continues only if its settings,
    data and model are unchanged (provenance.json); --fork starts a new run from its weights instead."""
    from ..config import load_config
    from ..training import train

    cfg = load_config(config, set_)
    if fork:
        cfg.train.resume = "fork"
    result = train(cfg)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under `accelerate launch`, one summary
        return
    last = result.train_metrics
    summary = f"{result.steps} steps, loss {last.get('loss', float('nan')):.4f}"
    if "rewards/margins" in last:
        accuracy = last.get("rewards/accuracies", float("nan"))
        summary += f", reward margin {last['rewards/margins']:.3f}, accuracy {accuracy:.2f}"
    elif "preference/prob" in last:
        accuracy = last.get("rewards/accuracies", float("nan"))
        summary += f", P(chosen ≻ rejected) {last['preference/prob']:.3f}, accuracy {accuracy:.2f}"
    summary += f", {result.tokens_per_s:,.0f} tokens/s"
    err_console.print(f"[green]done[/green]: {summary}")
    if result.eval_metrics:
        ev = result.eval_metrics
        line = f"eval loss {ev.get('loss', float('nan')):.4f}"
        if "accuracy" in ev:  # a reward model: TRL's RewardTrainer metrics on the held-out pairs
            line += f", accuracy {ev['accuracy']:.3f}"
            if "margin" in ev:
                line += f", margin {ev['margin']:.3f}"
            if "log_likelihood" in ev:  # a mixture (maxmin_em): the annotators' marginal log-likelihood
                line += f", log-likelihood {ev['log_likelihood']:.3f}"
        elif "preference/prob" in ev:  # a general preference model: P(chosen ≻ rejected) on the held-out pairs
            line += (
                f", accuracy {ev.get('rewards/accuracies', float('nan')):.3f}, mean P(chosen ≻ rejected) "
                f"{ev['preference/prob']:.3f}"
            )
        err_console.print(line)
    if result.final_model_dir is not None:
        typer.echo(str(result.final_model_dir))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
