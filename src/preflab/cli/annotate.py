"""``preflab annotate``: completions JSONL -> preference data (pairs, rankings or unpaired labels).

Labels come from simulated annotators over gold scores (``--pool``: a preset or a pool spec file), from
the gold scores by rule (``--pairs best-vs-worst`` …), or from a reward model (``--reward-model``), by
rule or RSO rejection sampling (``--pairs rso``). Every record carries its annotator and group.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError

err_console = Console(stderr=True)
VOTE_STRATEGIES = ("random", "all")


def annotate_cmd(
    completions: Path = typer.Argument(..., help="Completions JSONL written by `preflab sample`."),
    out: Path = typer.Option(..., "--out", "-o", help="Preference data JSONL to write."),
    fmt: str = typer.Option("pairs", "--format", "-f", help="pairs, rankings or unpaired."),
    pairs: str = typer.Option(
        "random",
        "--pairs",
        help="random / all (annotator votes); best-vs-worst, "
        "best-vs-random, all-pairs, adjacent (by score); rso (rejection sampling).",
    ),
    pool: str = typer.Option(
        "gold",
        "--pool",
        help="Annotator preset (gold, bt, noisy, biased, groups, intransitive, mixed) or a YAML/JSON pool spec.",
    ),
    pairs_per_prompt: int = typer.Option(
        1,
        "--pairs-per-prompt",
        min=1,
        help=(
            "--pairs random: pairs shown per prompt; best-vs-worst (by score): the i-th best against the i-th "
            "worst for i up to N."
        ),
    ),
    reward_model: str | None = typer.Option(
        None, "--reward-model", help="Score with this sequence-classification model instead of gold scores."
    ),
    rso_beta: float = typer.Option(0.5, "--rso-beta", help="RSO temperature β."),
    rso_accept: int = typer.Option(4, "--rso-accept", min=2, help="RSO samples accepted per prompt."),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        help="Unpaired: desirable iff score > this (default: pairs split into chosen/rejected, KTO-style).",
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Turn sampled completions into preference data with annotator/group fields."""
    from ..data import pair_to_unpaired, save_records
    from ..feedback import builders
    from ..feedback.annotators import load_pool
    from ..feedback.samples import read_samples

    if fmt not in ("pairs", "rankings", "unpaired"):
        raise ConfigError(f"unknown --format '{fmt}' (use pairs, rankings or unpaired)", field="format")
    rules = ("best-vs-worst", "best-vs-random", "all-pairs", "adjacent", "rso")
    if pairs not in VOTE_STRATEGIES + rules:
        raise ConfigError(f"unknown --pairs '{pairs}' (use {', '.join(VOTE_STRATEGIES + rules)})", field="pairs")
    counts: Counter = Counter()
    # one completion suffices to label it desirable or not; pairs and rankings need two per prompt
    samples = _usable(read_samples(completions), counts, 1 if fmt == "unpaired" and threshold is not None else 2)
    scores, source = None, "gold"
    if reward_model is not None:
        from ..feedback.judges import RewardModelJudge

        judge = RewardModelJudge.from_pretrained(reward_model)
        with err_console.status(f"scoring {sum(len(s.completions) for s in samples)} completions"):
            scores = [judge.score_batch([s.prompt] * len(s.completions), s.completions) for s in samples]
        source = judge.name
    by_votes = reward_model is None and (pairs in VOTE_STRATEGIES or fmt == "rankings") and threshold is None
    if not by_votes and pool != "gold":
        raise ConfigError(
            f"--pool {pool} needs --pairs random/all (annotators vote on pairs); "
            f"--pairs {pairs} ranks by {source} scores",
            field="pool",
        )
    if by_votes and pairs == "rso":
        raise ConfigError("--pairs rso needs --reward-model or gold scores without annotators", field="pairs")
    if by_votes:
        annotators = load_pool(pool, seed)
        if fmt == "rankings":
            records = builders.annotate_rankings(samples, annotators, seed=seed)
        else:
            records = builders.annotate_pairs(
                samples, annotators, strategy=pairs, pairs_per_prompt=pairs_per_prompt, seed=seed, counts=counts
            )
    elif fmt == "rankings":
        records = builders.to_rankings(samples, scores, annotator=source)
    elif fmt == "unpaired" and threshold is not None:
        records = builders.to_unpaired(samples, scores, threshold=threshold, annotator=source, counts=counts)
    elif pairs == "rso":
        records = builders.rso_pairs(
            samples, scores, beta=rso_beta, num_accepted=rso_accept, seed=seed, annotator=source, counts=counts
        )
    elif pairs in VOTE_STRATEGIES:
        raise ConfigError(f"--pairs {pairs} needs annotators; with --reward-model use a rule or rso", field="pairs")
    else:
        records = builders.rule_pairs(
            samples,
            pairs,
            scores,
            annotator=source,
            seed=seed,
            counts=counts,
            k=pairs_per_prompt if pairs == "best-vs-worst" else 1,
        )
    if fmt == "unpaired" and threshold is None:
        records = [u for p in records for u in pair_to_unpaired(p)]
    save_records(records, out)
    _summary(records, counts)
    err_console.print(
        f"[dim]wrote {len(records)} {fmt} records from {len(samples)} prompts to {escape(str(out))}[/dim]"
    )


def _usable(samples: list, counts: Counter, min_completions: int) -> list:
    """The samples without empty completions (the data layer rejects an empty chosen, rejected or answer, so
    ``preflab train`` would refuse the file); what was skipped is said on stderr, with why."""
    from ..feedback.samples import usable_samples

    kept = usable_samples(samples, counts, min_completions)
    empty = counts["empty_completions_dropped"]
    short = counts[f"prompts_with_under_{min_completions}_completions_skipped"]
    if empty:
        err_console.print(
            f"[yellow]skipped {empty} empty completion(s)[/yellow] (empty or whitespace-only text: preference "
            f"data cannot have an empty answer); {short} prompt(s) left with fewer than {min_completions} "
            "completions were skipped",
            highlight=False,
        )
    return kept


def _summary(records: list, counts: Counter) -> None:
    table = Table(title="records by annotator")
    for col in ("annotator", "group", "records"):
        table.add_column(col)
    tally = Counter((r.annotator, r.group) for r in records)
    for (name, group), k in sorted(tally.items(), key=lambda x: (str(x[0][0]), str(x[0][1]))):
        table.add_row(escape(str(name)), escape(str(group or "-")), str(k))
    Console().print(table)
    if counts:
        voted = counts["agrees_with_gold"] + counts["against_gold"]
        parts = [f"{k}={v}" for k, v in sorted(counts.items())]
        if voted:
            parts.append(f"gold agreement {counts['agrees_with_gold'] / voted:.3f} (excluding gold ties)")
        typer.echo("; ".join(parts))


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate_cmd)
