"""``preflab report RUN_DIR``: one self-contained HTML page about a run, plus its plots as PNG files.

The page holds, when the run has them: summary cards, training curves (loss, reward margin, accuracy,
KL from ``metrics.jsonl``), every evaluation in ``eval/*.json`` (win rates with CIs, length-controlled
win rate, null-model check, KL, gold per family, per-group results, ranking accuracy), the
over-optimisation table and plot, and the run's config. Missing or unreadable parts never stop the
report: the page lists them at the top.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

from ..files import atomic_write_bytes as _atomic_write
from ..files import check_output_dir
from . import html as H
from .overoptimization import OverOptimisation, overoptimisation
from .plots import (
    gold_family_plot,
    overoptimisation_plot,
    png_bytes,
    reliability_plot,
    training_curves,
    win_rate_plot,
)
from .report_sections import eval_sections, overopt_section, rm_eval_section
from .result import EvalResult
from .run_files import MetricsSeries, RunContents, read_run

REPORT_DIR = "report"
REPORT_FILE = "report.html"

#: Metric names (in metrics.jsonl) read as gold / proxy reward for the over-optimisation curve.
# the rollout schedule (PPO, GRPO, RLOO, ...) logs its judge's mean reward as rollout/reward and the gold scorer's
# as rollout/gold_reward; the online pair schedules log gold_reward and proxy_reward
GOLD_KEYS = ("gold", "gold_reward", "rollout/gold_reward", "rewards/gold", "gold_score")
# sequence-level KL first: a policy-gradient run's `kl` is its loss's per-token estimator
KL_KEYS = ("kl/sequence", "rollout/kl", "kl")
PROXY_KEYS = ("proxy", "proxy_reward", "rollout/reward", "rewards/proxy", "reward", "rewards/chosen_score")


@dataclass
class Report:
    """Where the report was written, the PNGs beside it, and what was missing."""

    path: Path
    pngs: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def overopt_from_metrics(log: MetricsSeries) -> OverOptimisation | None:
    """Over-optimisation points from logged steps that have a sequence-level KL (:data:`KL_KEYS`) and a gold (and
    proxy) reward."""
    for split in ("eval", "train"):
        series = log.series.get(split, {})
        gold_key = next((k for k in GOLD_KEYS if k in series), None)
        kl_key = next((k for k in KL_KEYS if k in series), None)
        if gold_key is None or kl_key is None:
            continue
        proxy_key = next((k for k in PROXY_KEYS if k in series), None)
        kl = dict(zip(*series[kl_key], strict=True))
        gold = dict(zip(*series[gold_key], strict=True))
        proxy = dict(zip(*series[proxy_key], strict=True)) if proxy_key else {}
        rows = [{"step": s, "kl": kl[s], "gold": gold[s], "proxy": proxy.get(s)} for s in sorted(gold) if s in kl]
        if len(rows) >= 2:
            return overoptimisation(rows)
    return None


class _Writer:
    """Collects PNGs written next to the report."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.pngs: list[Path] = []

    def figure(self, fig, name: str, alt: str) -> str:
        if fig is None:
            return ""
        png = png_bytes(fig)
        path = self.out_dir / f"{name}.png"
        _atomic_write(path, png)
        self.pngs.append(path)
        return H.image(png, alt)


def _cards(run: RunContents) -> str:
    cards = []
    log = run.metrics
    if log is not None:
        steps = max((s[-1] for per in log.series.values() for s, _ in per.values() if s), default=None)
        cards.append(H.card("steps logged", H.fmt(steps), f"{log.n_records} records"))
        for key, label in (("loss", "final train loss"), ("rewards/accuracies", "final reward accuracy")):
            value = log.last(key)
            if value is not None:
                cards.append(H.card(label, H.fmt(value)))
    for _, ev in run.evals:
        if ev.win_rate is not None:
            w = ev.win_rate
            cards.append(
                H.card(
                    f"win rate · {ev.name}",
                    H.fmt(w.win_rate, pct=True),
                    f"95% CI {H.ci(w.ci_low, w.ci_high, pct=True)}, n={H.esc(w.n)}",
                )
            )
        if ev.lc_win_rate is not None:
            lc = ev.lc_win_rate
            cards.append(
                H.card(
                    f"LC win rate · {ev.name}",
                    H.fmt(lc.lc_win_rate, pct=True),
                    f"95% CI {H.ci(lc.ci_low, lc.ci_high, pct=True)}",
                )
            )
        if ev.kl is not None:
            # k3 is never negative; k1 (the plain mean log-ratio) can be, on few samples
            cards.append(
                H.card(
                    f"KL · {ev.name}",
                    f"{H.fmt(ev.kl.k3, 3)} nats",
                    f"k3 ± {H.fmt(ev.kl.k3_se, 3)} (SE); k1 {H.fmt(ev.kl.kl, 3)} ± {H.fmt(ev.kl.se, 3)}",
                )
            )
        if ev.null_check is not None:
            nc = ev.null_check
            css, word = (
                ("bad", "unreliable")
                if not nc.reliable
                else ("ok", "reliable")
                if nc.conclusive
                else ("warn", "inconclusive")
            )
            cards.append(H.card(f"judge · {nc.judge}", f'<span class="{css}">{word}</span>', "null-model check"))
    return f'<div class="cards">{"".join(cards)}</div>' if cards else ""


WALL_CLOCK_KEYS = ("time",)


def _settings_line(ev: EvalResult) -> str:
    """How the evaluation sampled and measured (from the result's ``meta``), so its numbers can be read."""
    meta = ev.meta if isinstance(ev.meta, dict) else {}
    sampling = meta.get("sampling") if isinstance(meta.get("sampling"), dict) else {}
    parts = [
        f"{k.replace('_', ' ')} {sampling[k]}"
        for k in ("max_new_tokens", "temperature", "top_p", "seed", "batch_size")
        if k in sampling
    ]
    parts += [f"{k.replace('_', ' ')} {meta[k]}" for k in ("n_prompts", "length_unit") if k in meta]
    if not parts:
        return ""
    return f'<p class="muted">settings: {H.esc(", ".join(str(x) for x in parts))}</p>'


def _sig(value: float) -> str:
    """Four significant digits, so that a learning rate of 5e-05 does not read as 0.000."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _curves_section(run: RunContents, w: _Writer) -> str:
    if run.metrics is None:
        return ""
    img = w.figure(training_curves(run.metrics), "training_curves", "training curves")
    if not img:
        return '<p class="muted">metrics.jsonl holds no numeric metrics to plot.</p>'
    rows = []
    for split, per in run.metrics.series.items():
        for metric, (steps, values) in per.items():
            if metric in WALL_CLOCK_KEYS:  # a Unix timestamp is no metric to read as a number
                continue
            rows.append([metric, split, len(values), _sig(values[0]), _sig(values[-1]), steps[-1]])
    return (
        img
        + "<details><summary>Final values of every logged metric</summary>"
        + H.table(["metric", "split", "points", "first", "last", "last step"], rows)
        + "</details>"
    )


def render_report(run: RunContents, out_dir: Path) -> tuple[str, list[Path], list[str]]:
    """The report's HTML for the collected run contents, writing its PNGs into ``out_dir``."""
    w = _Writer(out_dir)
    missing = list(run.problems)
    nav: list[tuple[str, str]] = []
    body: list[str] = [_cards(run)]

    curves = _curves_section(run, w)
    if curves:
        nav.append(("training", "Training"))
        body.append(f'<h2 id="training">Training curves</h2>{curves}')

    evals: list[EvalResult] = [ev for _, ev in run.evals]
    if evals:
        nav.append(("evaluation", "Evaluation"))
        body.append('<h2 id="evaluation">Evaluation</h2>')
        try:
            body.append(w.figure(win_rate_plot(evals), "win_rates", "win rates with confidence intervals"))
        except (TypeError, ValueError) as exc:  # a hand-edited file with a string where a number belongs
            missing.append(f"win-rate plot not drawn ({type(exc).__name__}: {exc})")
        for i, (path, ev) in enumerate(run.evals):
            judge = f" · judge <b>{H.esc(ev.judge)}</b>" if ev.judge else ""
            body.append(
                f'<h2 id="eval-{i}" style="border-top:1px dashed #e3e7ee">{H.esc(ev.name)} '
                f'<span class="sub">({H.esc(ev.a_name)} vs {H.esc(ev.b_name)}{judge}; '
                f"{H.esc(path.name)})</span></h2>"
            )
            body.append(_settings_line(ev))
            try:  # a hand-edited file may hold a string where a number belongs: list it, keep the report
                gold_plot = ""
                if len(ev.gold) > 1:
                    gold_plot = w.figure(gold_family_plot(ev), f"gold_{_slug(ev.name)}", "gold score per family")
                body.append(eval_sections(ev, gold_plot))
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                missing.append(f"eval/{path.name}: not shown ({type(exc).__name__}: {exc})")

    if run.rm_eval is not None:
        nav.append(("reward-model", "Reward model"))
        body.append('<h2 id="reward-model">Reward model on held-out pairs</h2>')
        try:
            bins = [b for b in run.rm_eval.get("reliability") or [] if isinstance(b, dict)]
            ece = run.rm_eval.get("ece")
            body.append(rm_eval_section(run.rm_eval))
            body.append(
                w.figure(
                    reliability_plot(bins, ece if isinstance(ece, int | float) else None),
                    "reliability",
                    "reliability diagram of the reward model",
                )
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            missing.append(f"rm_eval.json: not shown ({type(exc).__name__}: {exc})")

    curves = [
        (ev.name, ev.overoptimisation) for ev in evals if ev.overoptimisation and len(ev.overoptimisation.points) > 1
    ]
    over_source = "evaluation results"
    if not curves and run.metrics is not None:
        from_log = overopt_from_metrics(run.metrics)
        curves, over_source = ([("metrics", from_log)] if from_log is not None else []), "metrics.jsonl"
    if curves:
        nav.append(("overoptimisation", "Over-optimisation"))
        body.append('<h2 id="overoptimisation">Over-optimisation: gold vs proxy reward</h2>')
        for i, (name, over) in enumerate(curves):  # one plot per evaluation that holds a curve (e.g. best-of-n runs)
            if len(curves) > 1:
                body.append(f"<h3>{H.esc(name)}</h3>")
            slug = "overoptimisation" if i == 0 else f"overoptimisation_{_slug(name)}"
            body.append(w.figure(overoptimisation_plot(over), slug, f"gold and proxy reward vs KL ({name})"))
        if over_source == "metrics.jsonl":
            body.append(overopt_section(curves[0][1], "Over-optimisation table (from metrics.jsonl)"))
    else:  # most runs are not meant to produce it: a note, not a missing part
        body.append(
            '<p class="muted">No over-optimisation plot: it needs checkpoints scored with KL and gold reward '
            f"(in eval/*.json, or metrics.jsonl keys {H.esc(', '.join(GOLD_KEYS[:2]))}), which this run "
            "did not produce.</p>"
        )

    if run.config_text is not None:
        nav.append(("config", "Config"))
        body.append(
            f'<h2 id="config">Run configuration</h2><details><summary>config.yaml</summary>'
            f"<pre>{H.esc(run.config_text)}</pre></details>"
        )

    if missing:
        items = "".join(f"<li>{H.esc(m)}</li>" for m in missing)
        body.insert(0, f'<div class="callout"><b>Missing or skipped parts</b><ul>{items}</ul></div>')
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    subtitle = f"run directory <code>{H.esc(run.run_dir.resolve())}</code> · generated {H.esc(stamp)}"
    page = H.page(f"preflab report — {run.run_dir.resolve().name}", subtitle, nav, "".join(body))
    return page, w.pngs, missing


def build_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    """Write ``<out_dir>/report.html`` (default ``RUN_DIR/report/``) and the plots' PNGs beside it."""
    run = read_run(run_dir)
    out = check_output_dir(Path(out_dir) if out_dir is not None else Path(run_dir) / REPORT_DIR, "report folder")
    out.mkdir(parents=True, exist_ok=True)
    page, pngs, missing = render_report(run, out)
    path = out / REPORT_FILE
    _atomic_write(path, page.encode("utf-8"))
    return Report(path, pngs, missing)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "eval"
