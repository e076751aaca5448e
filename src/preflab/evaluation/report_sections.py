"""HTML sections for the parts of an :class:`EvalResult` (win rates, KL, null check, gold, groups, ranking)."""

from __future__ import annotations

from . import html as H
from .html import Raw, ci, esc, fmt, table
from .overoptimization import OverOptimisation
from .result import EvalResult

MAX_SAMPLES_SHOWN = 12


def win_rate_section(ev: EvalResult) -> str:
    rows = []
    if ev.win_rate is not None:
        w = ev.win_rate
        rows.append(
            [
                "win rate",
                fmt(w.win_rate, pct=True),
                ci(w.ci_low, w.ci_high, pct=True),
                fmt(w.se, pct=True),
                f"{w.wins} / {w.ties} / {w.losses}",
                w.n,
                _yes_no(w.significant),
            ]
        )
    if ev.lc_win_rate is not None:
        lc = ev.lc_win_rate
        sig = lc.ci_low is not None and lc.ci_high is not None and (lc.ci_low > 0.5 or lc.ci_high < 0.5)
        rows.append(
            [
                "length-controlled win rate",
                fmt(lc.lc_win_rate, pct=True),
                ci(lc.ci_low, lc.ci_high, pct=True),
                fmt(lc.se, pct=True),
                "",
                lc.n,
                _yes_no(sig),
            ]
        )
    if not rows:
        return ""
    out = [
        f"<h3>Win rate of {esc(ev.a_name)} over {esc(ev.b_name)}</h3>",
        table(["measure", "value", "95% CI (bootstrap)", "SE", "wins / ties / losses", "n", "CI excludes 50%"], rows),
    ]
    if ev.lc_win_rate is not None:
        lc = ev.lc_win_rate
        out.append(
            f'<p class="muted">Length control (Dubois et al. 2024): logit P = θ + φ·tanh(Δlen/sd) fitted on the '
            f"judgements; θ = {fmt(lc.intercept)}, φ = {fmt(lc.length_coef)} (judge's length sensitivity), "
            f"mean length {esc(ev.a_name)} {fmt(lc.mean_len_a, 1)} vs {esc(ev.b_name)} {fmt(lc.mean_len_b, 1)}.</p>"
        )
    return "".join(out)


def null_section(ev: EvalResult) -> str:
    nc = ev.null_check
    if nc is None:
        return ""
    css = {"loses": "ok", "ties": "warn", "wins": "bad"}
    rows = [
        [
            r.name,
            Raw(f'<span class="muted">{esc(_clip(str(r.answer), 90)) or "(empty)"}</span>'),
            fmt(r.win_rate.win_rate, pct=True),
            ci(r.win_rate.ci_low, r.win_rate.ci_high, pct=True),
            fmt(r.win_rate.ties / max(r.win_rate.n, 1), pct=True),
            Raw(f'<span class="{css.get(r.verdict, "warn")}">{esc(_verdict(r.verdict))}</span>'),
        ]
        for r in nc.results
    ]
    level = "bad" if not nc.reliable else "ok" if nc.conclusive else "warn"
    verdict = f'<p class="{level}">{esc(nc.message())}.</p>'
    return (
        f"<h3>Null-model check of judge '{esc(nc.judge)}'</h3>"
        + verdict
        + table(["null answer", "text", f"win rate vs {ev.b_name}", "95% CI", "ties", "verdict"], rows, text_cols=(1,))
    )


def kl_section(ev: EvalResult) -> str:
    kl = ev.kl
    if kl is None:
        return ""
    rows = [
        ["k1: mean log π(y)/π_ref(y)", fmt(kl.kl, 4), fmt(kl.se, 4)],
        ["k3: mean (r − 1) − log r", fmt(kl.k3, 4), fmt(kl.k3_se, 4)],
        ["k2: mean ½ (log r)² (biased)", fmt(kl.k2, 4), "—"],
    ]
    if kl.kl_per_token is not None:
        rows.append(["k1 per token", fmt(kl.kl_per_token, 5), "—"])
    return (
        f"<h3>KL({esc(ev.a_name)} ‖ {esc(ev.b_name)})</h3>"
        + table(["estimator (sequence level, nats)", "value", "SE"], rows)
        + f'<p class="muted">{esc(kl.n)} samples of {esc(ev.a_name)} at temperature 1; mean length '
        f"{fmt(kl.mean_length, 1)} tokens.</p>"
    )


def gold_section(ev: EvalResult) -> str:
    if not ev.gold:
        return ""
    rows, classes = [], []
    for f in ev.gold:
        worse = f.gain.ci_high is not None and f.gain.ci_high < 0
        better = f.gain.ci_low is not None and f.gain.ci_low > 0
        verdict = Raw(
            '<span class="bad">worse</span>'
            if worse
            else '<span class="ok">better</span>'
            if better
            else '<span class="muted">no clear change</span>'
        )
        rows.append(
            [
                f.family,
                fmt(f.b.value),
                fmt(f.a.value),
                fmt(f.gain.value),
                ci(f.gain.ci_low, f.gain.ci_high),
                fmt(f.win_rate.win_rate, pct=True) if f.win_rate else "—",
                f.a.n,
                verdict,
            ]
        )
        classes.append("worst" if worse else "")
    return "<h3>Gold score per task family</h3>" + table(
        ["family", f"{ev.b_name}", f"{ev.a_name}", "gain", "gain 95% CI", "win rate", "n", ""], rows, classes
    )


def groups_section(ev: EvalResult) -> str:
    gr = ev.groups
    if gr is None or not gr.groups:
        return ""
    rows, classes = [], []
    for g in gr.groups:
        w = g.win_rate
        rows.append(
            [
                g.group,
                fmt(w.win_rate, pct=True),
                ci(w.ci_low, w.ci_high, pct=True),
                fmt(g.gold_b.value) if g.gold_b else "—",
                fmt(g.gold_a.value) if g.gold_a else "—",
                fmt(g.gold_gain) if g.gold_gain is not None else "—",
                w.n,
            ]
        )
        classes.append("worst" if g.group == gr.worst_by_win_rate else "")
    note = (
        f'<p>Worst group by win rate: <span class="bad">{esc(gr.worst_by_win_rate)}</span>; spread between '
        f"groups {fmt(gr.win_rate_spread, pct=True)}"
        + (f"; worst by gold score: <b>{esc(gr.worst_by_gold)}</b>" if gr.worst_by_gold else "")
        + ".</p>"
    )
    return (
        "<h3>Per annotator group</h3>"
        + note
        + table(
            ["group", "win rate", "95% CI", f"gold {ev.b_name}", f"gold {ev.a_name}", "gold gain", "n"], rows, classes
        )
    )


def ranking_section(ev: EvalResult) -> str:
    r = ev.ranking
    if r is None:
        return ""
    rows = [[label, fmt(a.value, pct=True), fmt(a.se, pct=True), a.n] for label, a in r.rows()]
    return (
        "<h3>Ranking accuracy on held-out pairs</h3>"
        + table(["ranks the preferred response first by", "accuracy", "SE", "pairs"], rows)
        + '<p class="muted">Idealised rows: the exact KL-regularised optimum under the ground truth '
        "(Chen et al. 2024, Preference Learning Algorithms Do Not Learn Preference Rankings).</p>"
    )


def overopt_section(over: OverOptimisation, title: str = "Over-optimisation table") -> str:
    rows = [
        [
            r["step"] if r["step"] is not None else "—",
            fmt(r["kl"], 4),
            fmt(r["sqrt_kl"], 3),
            fmt(r["proxy"]),
            fmt(r["gold"]),
            fmt(r["proxy_gain"]),
            fmt(r["gold_gain"]),
        ]
        for r in over.table()
    ]
    classes = ["worst" if p.step == over.peak_step and p.gold == over.peak_gold else "" for p in over.points]
    summary = ""
    if over.peak_gold is not None:
        state = (
            '<span class="bad">over-optimised</span>: gold fell by '
            + fmt(over.gold_drop)
            + " after its peak while the proxy "
            + ("kept rising" if (over.proxy_gain_after_peak or 0) > 0 else "held")
            if over.overoptimised
            else '<span class="ok">no over-optimisation detected</span>'
        )
        summary = (
            f"<p>Gold peaks at {fmt(over.peak_gold)} (step {esc(over.peak_step)}, KL {fmt(over.peak_kl, 4)}); {state}."
        )
        if over.fit is not None:
            peak = f"predicted peak at KL {fmt(over.fit.peak_kl, 3)}" if over.fit.peak_kl else "no interior peak"
            shape = "log d" if over.fit.form == "rl" else "d"
            summary += (
                f" Fit (Gao et al. 2022) gold = c + d(α − β {shape}), d = √KL: c = {fmt(over.fit.offset)}, "
                f"α = {fmt(over.fit.alpha)}, β = {fmt(over.fit.beta)}, R² = {fmt(over.fit.r2)}; {peak}."
            )
        summary += "</p>"
    return (
        f"<h3>{esc(title)}</h3>"
        + summary
        + table(["step", "KL", "√KL", "proxy", "gold", "Δ proxy", "Δ gold"], rows, classes)
    )


def samples_section(ev: EvalResult) -> str:
    if not ev.samples:
        return ""
    rows = []
    for s in ev.samples[:MAX_SAMPLES_SHOWN]:
        rows.append(
            [
                Raw(esc(_clip(_text(s.get("prompt")), 240))),
                Raw(esc(_clip(_text(s.get("a")), 400))),
                Raw(esc(_clip(_text(s.get("b")), 400))),
                fmt(s.get("preference"), 2),
                s.get("family") or "—",
            ]
        )
    return (
        f"<details><summary>Show {min(len(ev.samples), MAX_SAMPLES_SHOWN)} of {len(ev.samples)} judged "
        "answers</summary>"
        + table(["prompt", ev.a_name, ev.b_name, "P(a ≻ b)", "family"], rows, text_cols=(0, 1, 2))
        + "</details>"
    )


def eval_sections(ev: EvalResult, gold_plot: str = "") -> str:
    """Every present part of one evaluation, in reading order (``gold_plot``: an image after the gold table)."""
    parts = [
        win_rate_section(ev),
        null_section(ev),
        kl_section(ev),
        gold_section(ev),
        gold_plot,
        groups_section(ev),
        ranking_section(ev),
    ]
    if ev.overoptimisation is not None and ev.overoptimisation.points:
        parts.append(overopt_section(ev.overoptimisation))
    parts.append(samples_section(ev))
    return "".join(p for p in parts if p)


def _verdict(verdict: object) -> str:
    """A null answer's verdict as shown: WINS stands out."""
    return "WINS" if verdict == "wins" else str(verdict)


def _yes_no(flag: bool) -> Raw:
    return Raw("<b>yes</b>" if flag else '<span class="muted">no</span>')


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # chat messages
        return "\n".join(f"{m.get('role', '?')}: {m.get('content', '')}" for m in value if isinstance(m, dict))
    return str(value)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def rm_eval_section(rm: dict) -> str:
    """A reward model's held-out evaluation (``rm_eval.json``): accuracy, ECE, gold agreement, in / out of the
    training families, per family."""

    def num(key: str, row: dict | None = None) -> object:
        value = (row or rm).get(key)
        return value if isinstance(value, int | float) else None

    rows = [
        ["pairs", H.fmt(num("n"), 0)],
        ["accuracy (labels)", H.fmt(num("accuracy"))],
        ["expected calibration error", H.fmt(num("ece"))],
        ["mean margin", H.fmt(num("mean_margin"))],
    ]
    if rm.get("gold_agreement") is not None:
        rows.append(["gold agreement", f"{H.fmt(num('gold_agreement'))} ({H.fmt(num('gold_pairs'), 0)} pairs)"])
    if rm.get("mean_uncertainty") is not None:
        rows.append(["ensemble std (mean)", H.fmt(num("mean_uncertainty"))])
    html = H.table(["measure", "value"], rows)
    split = [
        (label, rm.get(key))
        for label, key in (
            ("training families (in distribution)", "in_family"),
            ("held-out families (out of distribution)", "out_of_family"),
        )
    ]
    split = [(label, row) for label, row in split if isinstance(row, dict)]
    if split:
        html += H.table(
            ["pairs of", "n", "accuracy", "gold agreement"],
            [
                [label, H.fmt(num("n", row), 0), H.fmt(num("accuracy", row)), H.fmt(num("gold_agreement", row))]
                for label, row in split
            ],
        )
    families = rm.get("families")
    if isinstance(families, dict) and families:
        seen = set(rm.get("train_families") or [])
        html += (
            "<details><summary>Per family</summary>"
            + H.table(
                ["family", "trained on", "n", "accuracy", "gold agreement"],
                [
                    [
                        fam,
                        ("yes" if fam in seen else "no") if seen else "",
                        H.fmt(num("n", row), 0),
                        H.fmt(num("accuracy", row)),
                        H.fmt(num("gold_agreement", row)),
                    ]
                    for fam, row in families.items()
                    if isinstance(row, dict)
                ],
            )
            + "</details>"
        )
    return html
