"""``preflab rm-eval MODEL... --pairs FILE``: a reward model (or an ensemble) on held-out preference pairs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError


def _model_and_run(path: Path) -> tuple[Path, Path | None]:
    """A run directory (its ``final/``), a run's ``final/`` or any model directory → (model dir, run dir)."""
    if (path / "final" / "config.json").is_file():
        return path / "final", path
    if path.name == "final":
        return path, path.parent
    return path, None


def _head_name(model_dir: Path) -> str:
    """The reward head recorded in the model's config.json (a one-line error when it has no trained head)."""
    from transformers import AutoConfig

    from ..models.reward import REWARD_CONFIG_KEY, check_reward_checkpoint

    check_reward_checkpoint(str(model_dir), field="models")
    info = getattr(AutoConfig.from_pretrained(str(model_dir)), REWARD_CONFIG_KEY, None)
    head = info.get("head") if isinstance(info, dict) else None
    return str(head.get("name", "scalar")) if isinstance(head, dict) else "scalar"


def _run_data_path(run: Path) -> Path | None:
    """The run's training data (``data.path`` of its config.yaml) when it is a local file."""
    import yaml

    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        path = Path(str((cfg.get("data") or {}).get("path")))
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return path if path.is_file() else None


def rm_eval_cmd(
    models: list[Path] = typer.Argument(
        ...,
        help="Reward model dir(s): a run dir, its final/, or any sequence-classification model; several = an ensemble.",
    ),
    pairs: Path = typer.Option(
        ...,
        "--pairs",
        help="Held-out preference pairs (any format the data layer reads; rankings become pairs best-vs-worst).",
    ),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default RUN_DIR/rm_eval.json)."),
    n: int | None = typer.Option(None, "--n", min=1, help="Evaluate the first N pairs only."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Sequences per forward pass."),
    bins: int = typer.Option(10, "--bins", min=1, help="Calibration bins over the confidence [0.5, 1]."),
    train_pairs: Path | None = typer.Option(
        None,
        "--train-pairs",
        help="The model's training pairs: their task "
        "families are in distribution, every other family held out (default: "
        "the run's data.path).",
    ),
) -> None:
    """Accuracy, calibration (ECE) and agreement with gold of a reward model on held-out pairs, in and out of the
    task families it was trained on."""
    from ..data import load_preferences
    from ..evaluation.reward_model import evaluate_reward_model, families_of
    from ..feedback.judges import GPMJudge, RewardEnsembleJudge, RewardModelJudge

    resolved = [_model_and_run(m) for m in models]
    run = resolved[0][1]
    if out is None:
        if run is None:
            raise ConfigError(f"{models[0]} is not a run directory; say where the result goes with --out", field="out")
        out = run / "rm_eval.json"
    records = load_preferences(str(pairs), kind="pairs").records
    records = records[:n] if n is not None else records
    if train_pairs is None and run is not None:
        train_pairs = _run_data_path(run)
    train_families = None
    if train_pairs is not None:
        train_families = sorted(
            {f for f in families_of(load_preferences(str(train_pairs), kind="pairs").records) if f is not None}
        )
    members = []
    for m, _ in resolved:
        gpm = _head_name(m) == "gpm"
        if gpm and len(resolved) > 1:
            raise ConfigError("general preference models (gpm) do not ensemble; evaluate one at a time", field="models")
        members.append((GPMJudge if gpm else RewardModelJudge).from_pretrained(str(m), batch_size=batch_size))
    judge = members[0] if len(members) == 1 else RewardEnsembleJudge(members)
    result = evaluate_reward_model(judge, records, n_bins=bins, train_families=train_families)
    payload = {"models": [str(m) for m, _ in resolved], "pairs": str(pairs), **result.to_dict()}
    from ..files import atomic_write_text, check_output_file

    atomic_write_text(check_output_file(out, "--out"), json.dumps(payload, indent=1, allow_nan=True) + "\n")
    typer.echo(f"pairs           {result.n} ({result.ties} ties)")
    typer.echo(f"accuracy        {result.accuracy:.3f}")
    typer.echo(f"mean margin     {result.mean_margin:.3f}")
    typer.echo(f"ECE ({bins} bins)   {result.ece:.3f}")
    if result.gold_agreement is not None:
        typer.echo(f"gold agreement  {result.gold_agreement:.3f} ({result.gold_pairs} pairs with unequal gold)")
    if result.mean_uncertainty is not None:
        typer.echo(f"ensemble std    {result.mean_uncertainty:.3f}")
    for label, row in (("in-family", result.in_family), ("held-out fams", result.out_of_family)):
        if row is not None:
            gold = f", gold {row['gold_agreement']:.3f}" if "gold_agreement" in row else ""
            typer.echo(f"{label:<15} n={int(row['n'])}, accuracy {row['accuracy']:.3f}{gold}")
    for fam, row in result.families.items():
        gold = f", gold {row['gold_agreement']:.3f}" if "gold_agreement" in row else ""
        typer.echo(f"  {fam:<16} n={int(row['n'])}, accuracy {row['accuracy']:.3f}{gold}")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("rm-eval")(rm_eval_cmd)
