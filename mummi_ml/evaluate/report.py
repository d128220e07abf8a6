"""A self-contained ``report.html``: tables and captioned figures, images base64-embedded, no
external resources (opens offline)."""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Figure", "markdown_tables_to_html", "write_report"]

_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px}
td{text-align:right}td:nth-child(1),td:nth-child(2){text-align:left}th{background:#eee}
figure{margin:1.5em 0}figcaption{font-size:90%;color:#444;max-width:900px}
img{max-width:100%}code{background:#f4f4f4}"""


@dataclass(frozen=True)
class Figure:
    """A PNG file and its caption."""

    path: Path
    caption: str


def markdown_tables_to_html(md: str) -> str:
    """Render the pipe tables and bold titles of ``table_markdown`` output as HTML."""
    out, rows = [], []

    def flush():
        if rows:
            head, body = rows[0], rows[2:]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>")
            out.extend("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in body)
            out.append("</table>")
            rows.clear()

    for line in md.splitlines():
        s = line.strip()
        if s.startswith("|"):
            rows.append([html.escape(c.strip()) for c in s.strip("|").split("|")])
            continue
        flush()
        if s.startswith("**") and s.endswith("**"):
            out.append(f"<h3>{html.escape(s.strip('*'))}</h3>")
        elif s.startswith("- "):
            out.append(f"<p>{html.escape(s[2:])}</p>")
    flush()
    return "\n".join(out)


def write_report(
    path: str | Path, metrics: dict[str, Any], table_md: str, figures: list[Figure]
) -> Path:
    """Write the report (atomically) and return its path."""
    path = Path(path)
    m = metrics.get("model", {})
    d = metrics.get("data", {})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mummi-ml evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>mummi-ml metric evaluation</h1>",
        f"<p>Model <code>{html.escape(str(m.get('path')))}</code> (version "
        f"{html.escape(str(m.get('version')))}, d = {m.get('latent_dim')}, lambda_rad = "
        f"{m.get('lambda_rad')}); data <code>{html.escape(str(d.get('path')))}</code>, "
        f"{d.get('n_points')} points (class counts {d.get('class_counts')}); "
        f"{html.escape(str(metrics.get('created_by', '')))}.</p>",
        "<h2>Criteria (the paper's Table 1 layout)</h2>",
        "<p>Overlap %: share of pairs of distinct points no farther apart than the farthest "
        "point-to-own-transformation distance tau (lower is better). MARE: median over all pairs "
        "of |d - lambda d_Upsilon| (units of d); MARE* = MARE / lambda (units of d_Upsilon; lower "
        "is better). AUC: area under the neighbourhood precision-recall curve of class labels "
        "(higher is better). All exact over every pair.</p>",
        markdown_tables_to_html(table_md),
    ]
    for note in metrics.get("notes", []):
        parts.append(f"<p><i>{html.escape(note)}</i></p>")
    t = metrics.get("time", {}).get("fit")
    if t:
        parts.append(
            f"<p>Decorrelation time from the histories: {t['tau_us']:.3g} us "
            f"(diffusive estimate {t['diffusive_us']:.3g} us, ratio {t['ratio']:.2f}).</p>"
        )
    parts.append("<h2>Figures</h2>")
    for i, fig in enumerate(figures, 1):
        data = base64.b64encode(Path(fig.path).read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(Path(fig.path).name)}' "
            f"src='data:image/png;base64,{data}'><figcaption><b>Figure {i}.</b> "
            f"{html.escape(fig.caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
