"""``preflab data inspect`` and ``preflab data convert``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

data_app = typer.Typer(help="Inspect and convert preference data files.", no_args_is_help=True)

_FORMAT_HELP = (
    "Force a format: preference, implicit_preference, unpaired, rated, ranking, prompt_completion, messages "
    "(default: detect)."
)


#: Records measured per tokenizer call in ``data inspect``.
INSPECT_BATCH = 256


@data_app.command("inspect")
def inspect(
    path: str = typer.Argument(..., help="Data file, save_to_disk directory or datasets hub name."),
    format: str | None = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    kind: str | None = typer.Option(None, "--kind", help="Convert first: pairs, rankings or unpaired."),
    rule: str = typer.Option(
        "best-vs-worst", "--rule", help="Rankings to pairs: best-vs-worst, best-vs-random, all-pairs, adjacent."
    ),
    tokenizer: str = typer.Option(
        "smollm2-135m-instruct",
        "--tokenizer",
        "-t",
        help="Tokenizer for token lengths (name or path); 'none' for characters.",
    ),
    max_chars: int | None = typer.Option(
        None, "--max-chars", min=1, help="Flag rows longer than this (prompt + response)."
    ),
    split: str = typer.Option("train", "--split", help="Split of a datasets directory or hub dataset."),
    report: Path | None = typer.Option(None, "--report", help="Also write the bad rows to this JSONL file."),
    strict: bool = typer.Option(
        False, "--strict", help="Exit with code 2 (after the full report) when any row is bad."
    ),
) -> None:
    """Detected format, counts, token-length percentiles, and every validation finding.

    Bad rows never stop the inspection: each one is listed with its line / row
    and field. With --strict the command then exits with code 2.
    Rows are streamed and lengths kept as histograms: memory follows a batch.
    """
    from ..data import FORMATS, stream_preferences
    from ..files import check_output_file

    if report is not None:  # before reading the data: a bad path is a one-line error, not a late traceback
        check_output_file(report, "--report")
    result, records = stream_preferences(
        path, format=format, kind=kind, rule=rule, on_bad_row="skip", max_chars=max_chars, split=split
    )
    summary, note = _measure(records, tokenizer)
    if report is not None:
        result.write_report(report)
    n_bad = sum(result.skipped.values())
    typer.echo(f"source:   {result.source}")
    typer.echo(f"format:   {result.format} ({FORMATS[result.format]})")
    typer.echo(f"rows:     {result.n_rows} read, {result.n_rows - n_bad} valid, {n_bad} bad")
    if result.skipped:
        typer.echo("bad rows: " + ", ".join(f"{k}={v}" for k, v in result.skipped.most_common()))
    _echo_summary(summary, result.kind, note, tokenizer)
    typer.echo(f"findings ({len(result.findings)})" + (":" if result.findings else ": none"))
    for line in result.findings:
        typer.echo(f"  {line}")
    if report is not None:
        typer.echo(f"bad rows written to {report}")
    if strict and n_bad:
        typer.echo(f"error: {result.source}: {n_bad} bad row(s) (--strict)", err=True)
        raise typer.Exit(2)


def _measure(records: Iterator[Any], tokenizer: str) -> tuple[Any, str | None]:
    """Length histograms of the records, tokenised in batches; the tokenizer loads at the first batch.

    Returns the summary and a note when token lengths fell back to characters.
    """
    from ..data.stats import RecordSummary
    from ..errors import PreflabError

    summary = RecordSummary()
    note = None
    want_tokens = tokenizer.lower() != "none"
    for batch in _batches(records, INSPECT_BATCH):
        if want_tokens:
            want_tokens = False
            from ..models import load_tokenizer

            try:
                summary.tokenizer = load_tokenizer(tokenizer)
            except PreflabError as err:
                note = f"(token lengths unavailable: {err}; showing characters)"
        summary.add(batch)
    return summary, note


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while batch := list(itertools.islice(items, size)):
        yield batch


def _echo_summary(summary: Any, kind: str, note: str | None, tokenizer: str) -> None:
    from ..data.stats import format_table

    typer.echo(f"records:  {summary.n_records} {kind} ({summary.style()})")
    sizes = summary.ranking_sizes
    if kind == "rankings" and sizes:
        mean = sum(k * v for k, v in sizes.items()) / sum(sizes.values())
        typer.echo(f"responses per ranking: min {min(sizes)}, mean {mean:.2f}, max {max(sizes)}")
    for key, values in (("annotator", summary.annotators), ("group", summary.groups)):
        if values:
            typer.echo(f"{key}s: {len(values)} distinct")
    if summary.soft_labels:
        typer.echo(f"soft labels (preference_prob): {summary.soft_labels}")
    if note:
        typer.echo(note)
    if summary.n_records:
        unit = f"tokens, {tokenizer}" if summary.tokenizer is not None else "characters"
        typer.echo(f"lengths ({unit}):")
        rows = [(s.field, s.count, s.p50, s.p90, s.p99, s.max, f"{s.mean:.1f}") for s in summary.table()]
        for line in format_table(("field", "count", "p50", "p90", "p99", "max", "mean"), rows):
            typer.echo(line)


@data_app.command("convert")
def convert_cmd(
    src: str = typer.Argument(..., help="Input: data file, save_to_disk directory or hub name."),
    out: Path = typer.Argument(
        ...,
        help="Output file; its suffix picks the format: .jsonl, .json, .csv "
        "(each optionally .gz) or .parquet. Never the input file.",
    ),
    to: str = typer.Option(
        ..., "--to", help="pairs, rankings, unpaired, or demonstrations (from prompt/completion or messages rows)."
    ),
    rule: str = typer.Option(
        "best-vs-worst", "--rule", help="Rankings to pairs: best-vs-worst, best-vs-random, all-pairs, adjacent."
    ),
    format: str | None = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    on_bad_row: str = typer.Option(
        "error", "--on-bad-row", help="error: stop at the first bad row; skip: skip and count."
    ),
    report: Path | None = typer.Option(None, "--report", help="With --on-bad-row skip: write skipped rows here."),
    seed: int = typer.Option(0, "--seed", help="Seed of best-vs-random."),
    split: str = typer.Option("train", "--split"),
) -> None:
    """Convert preference data between pairs, rankings and unpaired feedback (TRL field names).

    The output is written atomically (a temporary file, then a rename) in the format its suffix names.
    """
    from ..data import load_preferences
    from ..data.writers import check_output, write_records
    from ..files import check_output_file

    for where, what in ((out, "output"), (report, "--report")):  # before reading the data
        if where is not None:
            check_output_file(where, what)
    fmt = check_output(out, src)  # before reading: a wrong output path costs nothing
    result = load_preferences(
        src, format=format, kind=to, rule=rule, on_bad_row=on_bad_row, report_path=report, seed=seed, split=split
    )
    write_records(result.records, out, format=fmt)
    n_bad = sum(result.skipped.values())
    typer.echo(
        f"{result.n_rows} rows ({result.format}) -> {len(result.records)} {result.kind} in {out} ({fmt})"
        + (f"; {n_bad} bad rows skipped" if n_bad else "")
    )
    for line in result.findings:
        if "(skipped)" not in line:
            typer.echo(f"  {line}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
