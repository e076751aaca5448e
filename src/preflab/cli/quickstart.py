"""``preflab quickstart``: the end-to-end alignment job (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def quickstart(
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: the config's output_dir)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML config (default: recipes/quickstart.yaml values)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a key: a.b=value (repeatable)."),
) -> None:
    """Sample, annotate (noisy simulated annotators), train (RPO by default), evaluate against gold, report."""
    from ..config import load_config
    from ..pipelines import run_quickstart
    from ..pipelines.defaults import quickstart_defaults

    overrides = list(set_)
    cfg = load_config(config, overrides) if config is not None else quickstart_defaults(overrides)
    if out is not None:  # a path, not a YAML value: `--out "runs/[x]"` stays the string it is
        cfg.output_dir = str(out)
    result = run_quickstart(cfg)
    print_summary(result)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_summary(result) -> None:
    s, t = result.summary, result.timings
    console = Console()
    head = Table(title="quickstart: trained vs initial policy (gold judge, held-out prompts)")
    head.add_column("metric")
    head.add_column("value", justify="right")
    if "win_rate" in s:
        head.add_row("win rate (95% CI)", f"{_pct(s['win_rate'])} [{_pct(s['win_ci'][0])}, {_pct(s['win_ci'][1])}]")
        head.add_row("wins / losses / ties", f"{s['wins']} / {s['losses']} / {s['ties']} of {s['n_prompts']}")
    if "lc_win_rate" in s:
        head.add_row(
            "length-controlled win rate", f"{_pct(s['lc_win_rate'])} [{_pct(s['lc_ci'][0])}, {_pct(s['lc_ci'][1])}]"
        )
    if "kl" in s:
        head.add_row("KL(trained ‖ initial)", f"{s['kl']:.2f} ± {s['kl_se']:.2f} nats")
    rounds = f" ({s['rounds']} rounds)" if s.get("rounds") else ""
    head.add_row("training pairs / steps", f"{s.get('pairs')} / {s.get('train_steps')}{rounds}")
    console.print(head)
    fam = Table(title="gold score per task family")
    for col in ("family", "before", "after", "gain (95% CI)"):
        fam.add_column(col, justify="right" if col != "family" else "left")
    for name, f in s.get("families", {}).items():
        fam.add_row(
            escape(str(name)),
            f"{f['before']:.3f}",
            f"{f['after']:.3f}",
            f"{f['gain']:+.3f} [{f['gain_ci'][0]:+.3f}, {f['gain_ci'][1]:+.3f}]",
        )
    console.print(fam)
    console.print("time per stage: " + ", ".join(f"{k} {v:.0f}s" for k, v in t.items()))
    if result.report_path is not None:
        console.print(f"report: [bold]{escape(str(result.report_path))}[/]")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
