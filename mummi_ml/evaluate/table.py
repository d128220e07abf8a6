"""One row per evaluated metric, laid out like the paper's Table 1 (Markdown and JSON)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

__all__ = ["TableRow", "table_markdown", "KIND_TITLES"]

KIND_TITLES = {"baseline": "Standard", "ablation": "Ablations", "model": "Our metric"}


@dataclass(frozen=True)
class TableRow:
    """Criteria of one metric on one data set.

    Attributes:
        name, kind: label and group (``baseline``, ``ablation``, ``model``).
        dim: metric dimensionality.
        overlap_percent: overlap % (lower is better); tau: its threshold (units of the metric).
        mare: MARE (units of the metric); mare_star: MARE / lambda (units of d_Upsilon).
        lam: lambda used; lam_fitted: True if fitted by least squares through the origin.
        auc: PR AUC (higher is better).
        n_points: points evaluated (pairs = n (n - 1) / 2).
        seconds: wall time of the three criteria.
    """

    name: str
    kind: str
    dim: int
    overlap_percent: float
    tau: float
    mare: float
    mare_star: float
    lam: float
    lam_fitted: bool
    auc: float
    n_points: int
    seconds: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TableRow:
        """A row as :meth:`to_dict` wrote it; a float criterion written as ``null`` (strict
        JSON's non-finite number) reads back as NaN; keys not of a row are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{
            k: (math.nan if v is None and k in _FLOAT_FIELDS else v)
            for k, v in d.items() if k in names
        })


_FLOAT_FIELDS = frozenset(f.name for f in fields(TableRow) if f.type == "float")


def _fmt(v: float, digits: int) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table_markdown(rows: list[TableRow], title: str = "") -> str:
    """The paper's Table 1 layout: group, metric, dimensionality, overlap % (lower better),
    MARE* (lower better), AUC (higher better); plus MARE, lambda and points."""
    lines = [f"**{title}**", ""] if title else []
    lines += [
        "| | Metric | Dim | Overlap % (↓) | MARE* (↓) | AUC (↑) | MARE | lambda | points |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    last_kind = None
    for r in rows:
        group = KIND_TITLES.get(r.kind, r.kind) if r.kind != last_kind else ""
        last_kind = r.kind
        lam = f"{r.lam:.4g}" + (" (fit)" if r.lam_fitted else "")
        lines.append(
            f"| {group} | {r.name} | {r.dim:,} | {_fmt(r.overlap_percent, 2)} | "
            f"{_fmt(r.mare_star, 2)} | {_fmt(r.auc, 2)} | {_fmt(r.mare, 3)} | {lam} | "
            f"{r.n_points:,} |"
        )
    return "\n".join(lines) + "\n"
