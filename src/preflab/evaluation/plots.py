"""Plots of the report, drawn with matplotlib's object API (no pyplot state, no display needed).

Each function returns a :class:`matplotlib.figure.Figure`, or None when there is nothing to draw;
:func:`png_bytes` renders a figure to PNG.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure

from .overoptimization import OverOptimisation, scaling_curve
from .result import EvalResult
from .run_files import MetricsSeries

BLUE, ORANGE, GREEN, RED, GREY = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f"

#: Training curves shown first, with their panel titles; any other logged metric follows.
CURVES = [
    ("loss", "Loss"),
    ("rewards/margins", "Reward margin  β·(h(y_w) − h(y_l))"),
    ("rewards/accuracies", "Reward accuracy"),
    ("kl", "KL(π ‖ π_ref)"),
    # sampling schedules (rollouts, online pairs): what the policy's own samples earned, and how far it moved
    ("rollout/reward", "Reward of the rollout (judge)"),
    ("rollout/gold_reward", "Gold reward of the rollout"),
    ("gold_reward", "Gold reward of the samples"),
    ("proxy_reward", "Proxy reward of the samples"),
    ("kl/sequence", "KL per completion (k1, summed over tokens)"),
    ("entropy", "Entropy (nats per token)"),
    ("rollout/response_length", "Response length (tokens)"),
]
SKIP = {"epoch", "lr", "learning_rate", "grad_norm", "tokens_per_s", "samples_per_s", "elapsed_s", "time"}


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _ema(values: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def curve_metrics(log: MetricsSeries, extra: int = 4) -> list[tuple[str, str]]:
    """The metrics to plot: the standard four that were logged, then up to ``extra`` others."""
    names = log.metrics()
    chosen = [(m, t) for m, t in CURVES if m in names]
    known = {m for m, _ in CURVES}
    others = [m for m in names if m not in known and m not in SKIP]
    return chosen + [(m, m) for m in others[:extra]]


def training_curves(log: MetricsSeries) -> Figure | None:
    """One panel per metric: train (raw, faint, and smoothed) and eval points against the step."""
    panels = curve_metrics(log)
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(5.2 * cols, 3.0 * rows), layout="constrained")
    for i, (metric, title) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        steps, values = log.get(metric, "train")
        if steps:
            v = np.asarray(values)
            ax.plot(steps, v, color=BLUE, alpha=0.25, lw=1)
            ax.plot(steps, _ema(v, min(1.0, 25.0 / max(len(v), 1))), color=BLUE, lw=2, label="train")
        for split, colour in (("eval", ORANGE), ("validation", ORANGE), ("test", GREEN)):
            e_steps, e_values = log.get(metric, split)
            if e_steps:
                ax.plot(e_steps, e_values, "o-", color=colour, lw=1.5, ms=4, label=split)
        if metric == "rewards/accuracies":
            ax.axhline(0.5, color=GREY, ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, frameon=False)
    return fig


def overoptimisation_plot(over: OverOptimisation) -> Figure | None:
    """Gold and proxy reward against KL (√ scale), the gold peak marked, Gao et al.'s fit dashed."""
    pts = [p for p in over.points if p.gold is not None or p.proxy is not None]
    if len(pts) < 2:
        return None
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    kl = np.array([max(p.kl, 0.0) for p in pts])
    handles = []
    gold = [(k, p.gold, p.gold_se) for k, p in zip(kl, pts, strict=True) if p.gold is not None]
    if gold:
        k, g, se = zip(*gold, strict=True)
        err = [s or 0.0 for s in se]
        handles.append(
            ax.errorbar(
                k, g, yerr=err if any(err) else None, fmt="o-", color=GREEN, lw=2, ms=5, capsize=3, label="gold reward"
            )
        )
        if over.peak_kl is not None:
            ax.axvline(max(over.peak_kl, 0.0), color=GREEN, ls=":", lw=1)
            ax.annotate(
                "gold peak",
                (max(over.peak_kl, 0.0), over.peak_gold),
                textcoords="offset points",
                xytext=(5, 8),
                fontsize=8,
                color=GREEN,
            )
        if over.fit is not None:
            d = np.linspace(np.sqrt(min(k)), np.sqrt(max(k)), 100)
            handles += ax.plot(
                d**2,
                scaling_curve(over.fit, d),
                "--",
                color=GREEN,
                lw=1,
                alpha=0.7,
                label=f"fit: Gao et al. ({over.fit.form}), R²={over.fit.r2:.2f}",
            )
    ax.set_xlabel("KL(π ‖ π_ref)  [nats, √ scale]")
    ax.set_ylabel("gold reward", color=GREEN)
    ax.set_xscale("function", functions=(lambda x: np.sqrt(np.clip(x, 0, None)), lambda x: np.square(x)))
    ax.grid(alpha=0.3)
    proxy = [(k, p.proxy) for k, p in zip(kl, pts, strict=True) if p.proxy is not None]
    if proxy:
        ax2 = ax.twinx()
        k, pr = zip(*proxy, strict=True)
        handles += ax2.plot(k, pr, "s--", color=ORANGE, lw=2, ms=5, label="proxy reward")
        ax2.set_ylabel("proxy reward", color=ORANGE)
    labels = [h.get_label() for h in handles]
    ax.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
    ax.set_title("Over-optimisation: gold vs proxy reward against KL", fontsize=10)
    return fig


def reliability_plot(bins: list[dict], ece: float | None = None) -> Figure | None:
    """Reliability diagram of a reward model (``rm_eval.json``'s ``reliability`` bins): the predicted winner's
    mean confidence against how often it won, per bin, the diagonal = perfect calibration; bar width ∝ count."""
    rows = [b for b in bins if b.get("count")]
    if not rows:
        return None
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0.5, 1.0], [0.5, 1.0], ":", color="#888", lw=1, label="perfect calibration")
    total = sum(b["count"] for b in rows)
    for b in rows:
        width = (b["hi"] - b["lo"]) * (0.35 + 0.65 * b["count"] / total)
        ax.bar((b["lo"] + b["hi"]) / 2, b["accuracy"], width=width, color=GREEN, alpha=0.35, edgecolor=GREEN)
    ax.plot([b["confidence"] for b in rows], [b["accuracy"] for b in rows], "o-", color=GREEN, ms=4, label="observed")
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("confidence of the predicted winner  max(q, 1 − q)")
    ax.set_ylabel("how often it won")
    title = "Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None and np.isfinite(ece) else "")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.grid(alpha=0.3)
    return fig


def win_rate_plot(evals: list[EvalResult]) -> Figure | None:
    """Forest plot: every evaluation's win rate (and LC win rate) with its CI, against the 50% line."""
    rows = []
    for ev in evals:
        if ev.win_rate is not None:
            rows.append((f"{ev.name}", ev.win_rate.win_rate, ev.win_rate.ci_low, ev.win_rate.ci_high, BLUE))
        if ev.lc_win_rate is not None:
            lc = ev.lc_win_rate
            rows.append((f"{ev.name} (LC)", lc.lc_win_rate, lc.ci_low, lc.ci_high, ORANGE))
        if ev.null_check is not None:
            for r in ev.null_check.results:
                w = r.win_rate
                rows.append((f"null '{r.name}' vs {ev.b_name}", w.win_rate, w.ci_low, w.ci_high, GREY))
    if not rows:
        return None
    fig = Figure(figsize=(7.0, 0.45 * len(rows) + 1.0), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    for i, (_, v, lo, hi, colour) in enumerate(rows):
        y = len(rows) - 1 - i
        if lo is not None and hi is not None and np.isfinite([lo, hi]).all():
            ax.plot([100 * lo, 100 * hi], [y, y], color=colour, lw=3, alpha=0.6)
        ax.plot([100 * v], [y], "o", color=colour, ms=7)
    ax.axvline(50, color=GREY, ls=":", lw=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in reversed(rows)], fontsize=8)
    ax.set_xlim(-3, 103)
    ax.set_xlabel("win rate (%), with 95% CI")
    ax.grid(axis="x", alpha=0.3)
    return fig


def gold_family_plot(ev: EvalResult) -> Figure | None:
    """Mean gold score of A and B per task family (with CIs)."""
    fams = ev.gold
    if not fams:
        return None
    fig = Figure(figsize=(max(5.0, 0.9 * len(fams) + 2.0), 3.4), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(fams))
    for offset, attr, label, colour in ((-0.2, "b", ev.b_name, GREY), (0.2, "a", ev.a_name, BLUE)):
        est = [getattr(f, attr) for f in fams]
        vals = np.array([e.value for e in est])
        lo = np.array([e.ci_low if e.ci_low is not None else e.value for e in est])
        hi = np.array([e.ci_high if e.ci_high is not None else e.value for e in est])
        err = np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)])
        ax.bar(
            x + offset,
            vals,
            width=0.4,
            color=colour,
            label=label,
            yerr=err,
            capsize=3,
            error_kw={"lw": 1, "alpha": 0.7},
        )
    ax.set_xticks(x, [f.family for f in fams], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("mean gold score")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Gold score per task family: {ev.a_name} vs {ev.b_name}", fontsize=10)
    return fig
