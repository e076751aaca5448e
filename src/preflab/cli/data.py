"""``preflab data inspect`` and ``preflab data convert``."""

from __future__ import annotations

from pathlib import Path

import typer

data_app = typer.Typer(help="Inspect and convert preference data files.", no_args_is_help=True)

_FORMAT_HELP = "Force a format: preference, implicit_preference, unpaired, rated, ranking (default: detect)."


@data_app.command("inspect")
def inspect(
    path: str = typer.Argument(..., help="Data file, save_to_disk directory or datasets hub name."),
    format: str | None = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    kind: str | None = typer.Option(None, "--kind", help="Convert first: pairs, rankings or unpaired."),
    rule: str = typer.Option("best-vs-worst", "--rule", help="Rankings to pairs: best-vs-worst, best-vs-random, all-pairs, adjacent."),
    tokenizer: str = typer.Option(
        "smollm2-135m-instruct", "--tokenizer", "-t", help="Tokenizer for token lengths (name or path); 'none' for characters."
    ),
    max_chars: int | None = typer.Option(None, "--max-chars", min=1, help="Flag rows longer than this (prompt + response)."),
    split: str = typer.Option("train", "--split", help="Split of a datasets directory or hub dataset."),
    report: Path | None = typer.Option(None, "--report", help="Also write the bad rows to this JSONL file."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 1 when any row is bad."),
) -> None:
    """Detected format, counts, token-length percentiles, and every validation finding.

    Bad rows never stop the inspection: each one is listed with its line / row and field.
    """
    from ..data import FORMATS, load_preferences
    from ..data.stats import length_table, style_of
    from ..errors import PreflabError
    from ..files import check_output_file

    if report is not None:  # before reading the data: a bad path is a one-line error, not a late traceback
        check_output_file(report, "--report")
    result = load_preferences(path, format=format, kind=kind, rule=rule, on_bad_row="skip",
                              max_chars=max_chars, split=split, report_path=report)
    n_bad = sum(result.skipped.values())
    typer.echo(f"source:   {result.source}")
    typer.echo(f"format:   {result.format} ({FORMATS[result.format]})")
    typer.echo(f"rows:     {result.n_rows} read, {result.n_rows - n_bad} valid, {n_bad} bad")
    if result.skipped:
        typer.echo("bad rows: " + ", ".join(f"{k}={v}" for k, v in result.skipped.most_common()))
    typer.echo(f"records:  {len(result.records)} {result.kind} ({style_of(result.records)})")
    if result.kind == "rankings" and result.records:
        sizes = [len(r.responses) for r in result.records]  # type: ignore[union-attr]
        typer.echo(f"responses per ranking: min {min(sizes)}, mean {sum(sizes) / len(sizes):.2f}, max {max(sizes)}")
    for key in ("annotator", "group"):
        values = {getattr(r, key) for r in result.records} - {None}
        if values:
            typer.echo(f"{key}s: {len(values)} distinct")
    soft = sum(1 for r in result.records if getattr(r, "preference_prob", None) is not None)
    if soft:
        typer.echo(f"soft labels (preference_prob): {soft}")
    tok = None
    unit = "characters"
    if tokenizer.lower() != "none" and result.records:
        from ..models import load_tokenizer

        try:
            tok = load_tokenizer(tokenizer)
            unit = f"tokens, {tokenizer}"
        except PreflabError as err:
            typer.echo(f"(token lengths unavailable: {err}; showing characters)")
    if result.records:
        typer.echo(f"lengths ({unit}):")
        typer.echo(f"  {'field':<11}{'count':>7}{'p50':>7}{'p90':>7}{'p99':>7}{'max':>7}{'mean':>9}")
        for s in length_table(result.records, tok):
            typer.echo(f"  {s.field:<11}{s.count:>7}{s.p50:>7}{s.p90:>7}{s.p99:>7}{s.max:>7}{s.mean:>9.1f}")
    typer.echo(f"findings ({len(result.findings)})" + (":" if result.findings else ": none"))
    for line in result.findings:
        typer.echo(f"  {line}")
    if report is not None:
        typer.echo(f"bad rows written to {report}")
    if strict and n_bad:
        raise typer.Exit(1)


@data_app.command("convert")
def convert_cmd(
    src: str = typer.Argument(..., help="Input: data file, save_to_disk directory or hub name."),
    out: Path = typer.Argument(..., help="Output JSONL file (TRL field names)."),
    to: str = typer.Option(..., "--to", help="pairs, rankings or unpaired."),
    rule: str = typer.Option("best-vs-worst", "--rule", help="Rankings to pairs: best-vs-worst, best-vs-random, all-pairs, adjacent."),
    format: str | None = typer.Option(None, "--format", "-f", help=_FORMAT_HELP),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help="error: stop at the first bad row; skip: skip and count."),
    report: Path | None = typer.Option(None, "--report", help="With --on-bad-row skip: write skipped rows here."),
    seed: int = typer.Option(0, "--seed", help="Seed of best-vs-random."),
    split: str = typer.Option("train", "--split"),
) -> None:
    """Convert preference data between pairs, rankings and unpaired feedback, written as JSONL."""
    from ..data import load_preferences, save_records
    from ..files import check_output_file

    for where, what in ((out, "output"), (report, "--report")):  # before reading the data
        if where is not None:
            check_output_file(where, what)
    result = load_preferences(src, format=format, kind=to, rule=rule, on_bad_row=on_bad_row,
                              report_path=report, seed=seed, split=split)
    save_records(result.records, out)
    n_bad = sum(result.skipped.values())
    typer.echo(f"{result.n_rows} rows ({result.format}) -> {len(result.records)} {result.kind} in {out}"
               + (f"; {n_bad} bad rows skipped" if n_bad else ""))
    for line in result.findings:
        if "(skipped)" not in line:
            typer.echo(f"  {line}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
