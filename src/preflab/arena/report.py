"""The arena's HTML report: regret curves with CIs, the no-regret test, CCE gap, LM parse failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..evaluation.html import Raw, card, esc, fmt, image, page, table
from ..evaluation.plots import png_bytes

_COLOURS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def curves_figure(summary: dict) -> Figure:
    """Cumulative regret (and dynamic regret or CCE gap where recorded) against the round, mean ± 95% CI."""
    rows = summary["agents"]
    panels = [("regret", "cumulative regret R(t)")]
    if any("dynamic_regret" in r for r in rows.values()):
        panels.append(("dynamic_regret", "dynamic regret D(t)"))
    if any("cce_gap" in r for r in rows.values()):
        panels = [("regret", "max of the players' regrets"), ("cce_gap", "CCE gap of the average joint play")]
    fig = Figure(figsize=(5.6 * len(panels), 3.6), layout="constrained")
    for n, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), n + 1)
        for i, (name, row) in enumerate(rows.items()):
            if key not in row:
                continue
            b = row[key]
            t = np.arange(1, len(b["mean"]) + 1)
            colour = _COLOURS[i % len(_COLOURS)]
            ax.plot(t, b["mean"], color=colour, lw=2, label=name)
            ax.fill_between(t, b["lo"], b["hi"], color=colour, alpha=0.15)
        ax.set_xlabel("round t")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    return fig


def results_table(summary: dict) -> tuple[list[str], list[list[object]]]:
    """The summary as table rows (shared by the report and the CLI)."""
    cfg = summary["config"]
    T = cfg["horizon"]
    header = ["agent", "seeds", f"R({T}) mean", "95% CI", f"R({T})/{T}", "exponent β", "verdict", "trend p"]
    extra = []
    rows_in = summary["agents"].values()
    if any("final_dynamic_regret_mean" in r for r in rows_in):
        extra.append(("final_dynamic_regret_mean", f"D({T})"))
    if any("final_cce_gap_mean" in r for r in rows_in):
        extra.append(("final_cce_gap_mean", f"CCE gap at {T}"))
    if any("parse_failure_rate" in r for r in rows_in):
        extra.append(("parse_failure_rate", "parse failures"))
    header += [label for _, label in extra]
    rows = []
    for r in rows_in:
        test = r["no_regret_test"]
        beta = "—" if test["exponent"] is None else f"{test['exponent']:.2f} ± {1.96 * test['exponent_se']:.2f}"
        lo, hi = r["final_regret_ci"]
        row = [
            r["agent"],
            r["seeds"],
            f"{r['final_regret_mean']:.2f}",
            f"[{lo:.2f}, {hi:.2f}]",
            f"{r['avg_regret']:.3f}",
            beta,
            test["verdict"],
            f"{test['trend_p']:.3g}",
        ]
        for key, _ in extra:
            v = r.get(key)
            row.append("—" if v is None else f"{100 * v:.1f}%" if key == "parse_failure_rate" else f"{v:.3f}")
        rows.append(row)
    return header, rows


def write_report(summary: dict, out: Path) -> Path:
    cfg = summary["config"]
    header, rows = results_table(summary)
    rows_in = list(summary["agents"].values())
    best = min(rows_in, key=lambda r: r["final_regret_mean"])
    cards = [
        card("environment", esc(cfg["env"])),
        card("horizon × seeds", f"{cfg['horizon']} × {cfg['seeds']}"),
        card("lowest final regret", esc(best["agent"]), f"R(T) = {fmt(best['final_regret_mean'])}"),
    ]
    lm = [r for r in rows_in if "parse_failure_rate" in r]
    if lm:
        cards.append(
            card(
                "LM parse failures",
                fmt(sum(r["parse_failures"] for r in lm)),
                f"of {sum(r['lm_rounds'] for r in lm)} answers; fallback: uniform",
            )
        )
    body = [
        f'<div class="cards">{"".join(cards)}</div>',
        '<h2 id="curves">Regret curves</h2>',
        image(png_bytes(curves_figure(summary)), "regret curves"),
        '<h2 id="table">Results</h2>',
        table(header, rows),
        '<p class="muted">Regret is in expectation over each agent\'s own randomisation, against the realised '
        "losses (stochastic bandits: the arm means). Exponent β: least-squares fit of log R̄(t) on log t over "
        "the last 80% of rounds, ± 1.96 s.e. Trend p: one-sided sign test that the average regret R̄(t)/t "
        "decreases. Verdict sublinear when β's 95% upper bound is below 1 and trend p < 0.05 (or R̄(T) ≤ 0), "
        "linear when its lower bound is at least 1.</p>",
    ]
    if any("final_row_probs" in r for r in rows_in):
        body.append('<h2 id="play">Final play (mean over seeds)</h2>')
        body.append(
            table(
                ["pairing", "row player", "column player"],
                [
                    [
                        r["agent"],
                        Raw(esc(np.round(r["final_row_probs"], 3).tolist())),
                        Raw(esc(np.round(r["final_col_probs"], 3).tolist())),
                    ]
                    for r in rows_in
                    if "final_row_probs" in r
                ],
            )
        )
    html = page(
        f"Regret arena: {cfg['env']}",
        esc(f"agents: {', '.join(cfg['agents'])}"),
        [("curves", "Curves"), ("table", "Results")],
        "".join(body),
    )
    from ..files import atomic_write_text

    path = Path(out) / "report.html"
    atomic_write_text(path, html)
    return path
