"""A self-contained ``report.html``: tables and captioned figures, images base64-embedded, no
external resources (opens offline)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mummi_ml.durable import write_text_atomic

__all__ = ["Figure", "markdown_tables_to_html", "write_report", "time_section_html"]

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


def _tau_text(fit: dict) -> str:
    if fit.get("determined") and fit.get("tau_us") is not None:
        return f"{fit['tau_us']:.3g} us"
    return f"not determined ({html.escape(str(fit.get('reason') or 'no fit'))})"


def time_section_html(time_info: dict) -> str:
    """The report's time analysis: the metric's and the patches' own decorrelation times, their
    ratio and the diffusive estimate; a time that is not determined says so and why."""
    fit = time_info.get("fit", {})
    gt = time_info.get("ground_truth", {}).get("fit")
    diffusive = time_info.get("diffusive_us", fit.get("diffusive_us"))
    rows = [f"<li>metric (d_z): {_tau_text(fit)}</li>"]
    if gt is not None:
        rows.append(f"<li>patches themselves (d_x, ground truth): {_tau_text(gt)}</li>")
        ratio = time_info.get("ratio_to_ground_truth")
        rows.append(
            f"<li>ratio d_z / d_x: {ratio:.2f}</li>" if ratio is not None else
            f"<li>ratio d_z / d_x: not determined "
            f"({html.escape(str(time_info.get('ratio_reason', '')))})</li>"
        )
    if diffusive is not None:
        rows.append(f"<li>analytic diffusive estimate L²/(D(2π)²): {diffusive:.3g} us (the "
                    "synthetic fields need not follow it)</li>")
    return ("<h2>Time</h2><p>Decorrelation times from the histories, each a fit of "
            "a + b(1 - exp(-t/tau)) to the mean distance between two patches of one protein's "
            "history against the time between them:</p><ul>" + "".join(rows) + "</ul>")


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
    time_info = metrics.get("time")
    if time_info:
        parts.append(time_section_html(time_info))
    parts.append("<h2>Figures</h2>")
    for i, fig in enumerate(figures, 1):
        data = base64.b64encode(Path(fig.path).read_bytes()).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(Path(fig.path).name)}' "
            f"src='data:image/png;base64,{data}'><figcaption><b>Figure {i}.</b> "
            f"{html.escape(fig.caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts), fsync=False)
    return path
