"""Building blocks of the self-contained HTML report: page shell with inline CSS, tables, cards, images.

No external resources: styles are inline, images are base64 ``data:`` URIs, so the file opens offline
and can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence

CSS = """
:root { --fg:#1d2433; --muted:#5b6475; --line:#e3e7ee; --bg:#f6f8fb; --ok:#1a7f37; --bad:#c62828;
        --warn:#9a6700; --accent:#1f6feb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
header { border-bottom: 1px solid var(--line); margin-bottom: 8px; padding-bottom: 10px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-top: 6px; border-top: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 8px; color: #2b3445; }
.sub { color: var(--muted); font-size: 13px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; font-size: 13px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 22px; font-weight: 600; margin-top: 2px; }
.card .note { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line); margin: 6px 0 14px;
        font-size: 13px; min-width: 50%; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
th.text { text-align: left; }
td.text { text-align: left; max-width: 360px; white-space: pre-wrap; word-break: break-word; }
tr.worst td { background: #fff4f4; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
.callout { background: #fff8e6; border: 1px solid #f0d58c; border-radius: 8px; padding: 10px 14px; margin: 14px 0; }
.callout ul { margin: 4px 0 0; padding-left: 20px; }
img.plot { max-width: 100%; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px; }
details { margin: 8px 0; } summary { cursor: pointer; color: var(--accent); }
pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow-x: auto; font-size: 12px; }
.muted { color: var(--muted); }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 3, pct: bool = False) -> str:
    """A number for display: percentages with one decimal, None / NaN as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not pct:
        return f"{value:,}"
    if isinstance(value, int | float):
        return f"{100 * value:.1f}%" if pct else f"{value:.{digits}g}" if abs(value) >= 1e4 else f"{value:.{digits}f}"
    return esc(value)


def ci(lo: float | None, hi: float | None, pct: bool = False, digits: int = 3) -> str:
    """``[lo, hi]`` formatted; an em dash when either end is missing or not a finite number."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi)):
        return "—"
    return f"[{fmt(lo, digits, pct)}, {fmt(hi, digits, pct)}]"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    row_classes: Sequence[str] | None = None,
    text_cols: Sequence[int] = (),
) -> str:
    """An HTML table; cells are escaped unless given as ``Raw``."""
    text_th = ' class="text"'
    heads = (f"<th{text_th if j in text_cols else ''}>{esc(h)}</th>" for j, h in enumerate(header))
    out = ["<table><thead><tr>", *heads, "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        cells = []
        for j, cell in enumerate(row):
            content = cell.html if isinstance(cell, Raw) else esc(cell)
            td_cls = ' class="text"' if j in text_cols else ""
            cells.append(f"<td{td_cls}>{content}</td>")
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


class Raw:
    """Pre-rendered HTML to put in a table cell as it is."""

    def __init__(self, html_text: str) -> None:
        self.html = html_text


def badge(ok: bool, yes: str = "pass", no: str = "FAIL") -> Raw:
    return Raw(f'<span class="{"ok" if ok else "bad"}">{esc(yes if ok else no)}</span>')


def card(label: str, value: str, note: str = "") -> str:
    """A summary card: ``label`` is escaped; ``value`` and ``note`` are HTML (escape what goes into them)."""
    note_html = f'<div class="note">{note}</div>' if note else ""
    return f'<div class="card"><div class="label">{esc(label)}</div><div class="value">{value}</div>{note_html}</div>'


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f'<header><h1>{esc(title)}</h1><div class="sub">{subtitle}</div><nav>{links}</nav></header>'
        f"{body}</main></body></html>\n"
    )
