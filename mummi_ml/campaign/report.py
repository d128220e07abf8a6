"""The campaign report: one self-contained HTML page (figures base64-embedded, opens offline) from
what a selector state directory records (:mod:`mummi_ml.campaign.data`).

Sections: summary counters; picks over time and each pick's novelty; class shares of the picks
against the quotas (and the pool); the covering radius of the selected set after each pick; drift
statistics per window with events and model versions marked; jobs by state; ingest over time;
quarantine reasons; a 2-D map (PCA) of the pool and the picks. A section whose data the state
directory does not hold says what is missing.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mummi_ml.campaign.data import Campaign, load_campaign
from mummi_ml.durable import write_text_atomic

__all__ = ["write_campaign_report", "covering_radii", "REPORT_NAME"]

REPORT_NAME = "campaign_report.html"

_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px}
th{background:#eee}td{text-align:right}td:first-child{text-align:left}
figure{margin:1.5em 0}figcaption{font-size:90%;color:#444;max-width:900px}img{max-width:100%}
code{background:#f4f4f4}.missing{color:#a40}"""


def covering_radii(picks_z: np.ndarray, pool_z: np.ndarray) -> np.ndarray:
    """float64 ``[k]``: r_j = max over ``pool_z [n, d]`` and the picks of the distance to the
    nearest of the first j+1 picks ``picks_z [k, d]`` (d_z units): the covering radius of the
    selected set after each pick, over the candidates still known (the final pool and the picks;
    evicted candidates are not stored)."""
    pts = np.concatenate([np.asarray(pool_z, np.float64).reshape(-1, picks_z.shape[1]),
                          np.asarray(picks_z, np.float64)])
    nearest = np.full(len(pts), np.inf)
    out = np.empty(len(picks_z))
    for j, s in enumerate(np.asarray(picks_z, np.float64)):
        nearest = np.minimum(nearest, np.linalg.norm(pts - s, axis=1))
        out[j] = nearest.max()
    return out


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(n: int, png: str, caption: str) -> str:
    return (f"<figure><img alt='figure {n}' src='data:image/png;base64,{png}'><figcaption>"
            f"<b>Figure {n}.</b> {html.escape(caption)}</figcaption></figure>")


def _table(head: list[str], rows: list[list[object]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
            for r in rows]
    return "".join(out) + "</table>"


def _missing(text: str) -> str:
    return f"<p class='missing'>{html.escape(text)}</p>"


def _version_changes(c: Campaign) -> list[tuple[int, str]]:
    """(pick seq, new version) where the picks' model version changes (first included)."""
    out, last = [], None
    for p in c.picks:
        if p.model_version is not None and p.model_version != last:
            out.append((p.seq, p.model_version))
            last = p.model_version
    return out


def _picks_section(c: Campaign, plt) -> tuple[str, list[tuple[str, str]]]:
    if not c.picks:
        return "<h2>Picks</h2>" + _missing("no picks recorded (picks.jsonl absent or empty)"), []
    seq = np.array([p.seq for p in c.picks])
    nov = np.array([p.novelty for p in c.picks])
    times = [p.time for p in c.picks]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.6))
    if all(t is not None for t in times):
        t0 = min(times)  # type: ignore[type-var]
        a.step([(t - t0) / 60 for t in times], np.arange(1, len(times) + 1), where="post")  # type: ignore[operator]
        a.set_xlabel("minutes since the first pick")
        xlab = "time of the job.json of each pick"
    else:
        a.step(seq, np.arange(1, len(seq) + 1), where="post")
        a.set_xlabel("pick order (some picks have no job.json time)")
        xlab = "pick order"
    a.set_ylabel("picks")
    finite = np.isfinite(nov)
    b.plot(seq[finite], nov[finite], "o-", ms=3)
    for s, v in _version_changes(c)[1:]:
        b.axvline(s, color="tab:red", lw=0.8, ls="--")
        b.annotate(v[:8], (s, b.get_ylim()[1]), fontsize=7, color="tab:red", rotation=90,
                   va="top")
    b.set_xlabel("pick")
    b.set_ylabel("novelty at pick (d_z)")
    caption = (f"Left: picks over time ({xlab}), {len(c.picks)} in all. Right: each pick's "
               "novelty, its distance to the nearest earlier pick (the first, infinite, is not "
               "drawn); dashed red lines: the model version changes.")
    return "<h2>Picks</h2>", [(_png(fig), caption)]


def _class_section(c: Campaign, quotas: list[float] | None, plt) -> list[tuple[str, str]]:
    names = c.groups or [f"class {k}" for k in range(4)]
    k = len(names)
    picks = np.bincount([p.cls for p in c.picks], minlength=k)[:k].astype(float)
    pool = np.bincount(c.pool_classes, minlength=k)[:k].astype(float)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    x = np.arange(k)
    bars = [("picks", picks / max(picks.sum(), 1)), ("pool", pool / max(pool.sum(), 1))]
    if quotas is not None and len(quotas) == k:
        q = np.asarray(quotas, float)
        bars.append(("quota", q / q.sum()))
    w = 0.8 / len(bars)
    for i, (label, v) in enumerate(bars):
        ax.bar(x + i * w, v, w, label=label)
    ax.set_xticks(x + w * (len(bars) - 1) / 2, names, fontsize=8)
    ax.set_ylabel("share")
    ax.legend()
    note = "" if len(bars) == 3 else " No quotas given (pass the campaign's --config)."
    return [(_png(fig), "Class shares of the picks and of the final pool, against the "
             f"quotas.{note}")]


def _cover_section(c: Campaign, plt) -> tuple[str, list[tuple[str, str]]]:
    versions = {p.model_version for p in c.picks}
    if len(c.selected_z) and c.pool_z.size and c.selected_z.shape[1] == c.pool_z.shape[1]:
        picks_z = c.selected_z  # the checkpoint's picks, embedded by the model in use
        cav = (f" All {len(picks_z)} picks of the newest checkpoint, embedded by the model in "
               "use (re-embedded at each hot swap).")
    else:
        zs = [p.z for p in c.picks]
        if not zs or c.pool_z.size == 0 or any(z.shape != zs[0].shape for z in zs) \
                or c.pool_z.shape[1] != len(zs[0]):
            return _missing("covering radius: needs the picks' embeddings (picks.jsonl) and "
                            "the pool's (a checkpoint) in one model version"), []
        picks_z = np.stack(zs)
        cav = (" Picks embedded by several model versions: distances mix embeddings."
               if len(versions) > 1 else "")
    r = covering_radii(picks_z, c.pool_z)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    ax.plot(np.arange(1, len(r) + 1), r, "o-", ms=3)
    ax.set_xlabel("picks")
    ax.set_ylabel("covering radius (d_z)")
    return "", [(_png(fig), "Covering radius of the selected set after each pick: the largest "
                 "distance from a known candidate (final pool and picks; evicted candidates are "
                 "not stored) to its nearest pick." + cav)]


def _drift_section(c: Campaign, plt) -> tuple[str, list[tuple[str, str]]]:
    if not c.drift:
        return "<h2>Drift</h2>" + _missing("no drift.jsonl: the campaign ran without the drift "
                                           "monitor"), []
    w = np.array([r.window for r in c.drift])
    series = [("far_fraction", "fraction beyond training q95"),
              ("median_ratio", "median distance / training median"),
              ("class_shift", "class shift (total variation)"),
              ("invariance_ratio", "max d(x, rho x) / tau")]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (name, label) in zip(axes, series, strict=True):
        v = np.array([np.nan if getattr(r, name) is None else getattr(r, name) for r in c.drift])
        ax.plot(w, v, "o-", ms=3)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("window")
        for r in c.drift:
            if r.event:
                ax.axvline(r.window, color="tab:red", lw=1.2)
        last = None
        for r in c.drift:
            if r.model_version != last:
                ax.axvline(r.window - 0.5, color="tab:green", lw=0.8, ls=":")
                last = r.model_version
    events = [r for r in c.drift if r.event]
    rows = [[r.window, r.model_version[:12], r.n, f"{r.far_fraction:.3g}",
             "-" if r.median_ratio is None else f"{r.median_ratio:.3g}",
             "-" if r.class_shift is None else f"{r.class_shift:.3g}",
             "-" if r.invariance_ratio is None else f"{r.invariance_ratio:.3g}",
             ", ".join(r.exceeded)] for r in events]
    text = "<h2>Drift</h2>" + (
        _table(["window", "model", "arrivals", "far", "median ratio", "class shift",
                "invariance", "above threshold"], rows) if rows else "<p>No drift event.</p>")
    versions = list(dict.fromkeys(r.model_version for r in c.drift))
    return text, [(_png(fig), f"Drift statistics per window of arrivals ({len(c.drift)} "
                   f"windows, model versions {', '.join(v[:12] for v in versions)}). Red: drift "
                   "events; dotted green: a new model version starts.")]


def _ops_section(c: Campaign, plt) -> tuple[str, list[tuple[str, str]]]:
    figs = []
    jobs = c.status.get("jobs") or {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    ax = axes[0]
    if jobs:
        ax.bar(list(jobs), list(jobs.values()))
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_title("jobs by state (status.json)", fontsize=9)
    ax = axes[1]
    pts = sorted({(p.time, p.counters.get("ingested", 0)) for p in c.checkpoints})
    if "time" in c.status and "ingested" in c.status:
        pts = sorted({*pts, (float(c.status["time"]), int(c.status["ingested"]))})
    t0 = min([t for t, _ in pts] + [t for t, _ in c.segments], default=0.0)
    if c.segments:
        ax.step([(t - t0) / 60 for t, _ in c.segments],
                np.cumsum([n for _, n in c.segments]), where="post",
                label="accepted, in live payload segments")
    if pts:
        ax.plot([(t - t0) / 60 for t, _ in pts], [n for _, n in pts], "o", label="ingested "
                "(checkpoints, status)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("patches")
    ax.legend(fontsize=7)
    ax.set_title("ingest over time", fontsize=9)
    figs.append((_png(fig), "Left: jobs by state. Right: patches over time: ingested (counters "
                 "of the kept checkpoints and of status.json) and accepted patches still "
                 "referenced (payload segments, one per ingested batch; segments of evicted "
                 "candidates are deleted, so this undercounts)."))
    rates = [(n2 - n1) / max(t2 - t1, 1e-9) for (t1, n1), (t2, n2) in zip(pts, pts[1:],
                                                                         strict=False)]
    if len(c.segments) > 1:
        span = c.segments[-1][0] - c.segments[0][0]
        rates.append(sum(n for _, n in c.segments[1:]) / max(span, 1e-9))
    qrows = [[code, head, n] for (code, head), n in sorted(c.quarantine.items())]
    text = ("<h2>Operations</h2>" + _table(["job journal event", "count"],
                                           sorted(c.journal_events.items()))
            + (f"<p>Ingest rate between recorded points (last: over the live payload "
               f"segments): {', '.join(f'{r:.3g}' for r in rates)} patches/s.</p>"
               if rates else "")
            + "<h3>Quarantine reasons</h3>"
            + (_table(["code", "reason", "patches"], qrows) if qrows
               else "<p>No patch quarantined.</p>"))
    return text, figs


def _map_section(c: Campaign, plt) -> list[tuple[str, str]]:
    zs = np.stack([p.z for p in c.picks]) if c.picks and len({p.z.shape for p in c.picks}) == 1 \
        else np.zeros((0, 0))
    if c.pool_z.size == 0 or (zs.size and zs.shape[1] != c.pool_z.shape[1]):
        return []
    allz = np.concatenate([c.pool_z, zs]) if zs.size else c.pool_z
    mean = allz.mean(0)
    _, _, vt = np.linalg.svd(allz - mean, full_matrices=False)
    proj = vt[: min(2, len(vt))].T
    pp = (c.pool_z - mean) @ proj
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.scatter(pp[:, 0], pp[:, -1], s=4, c=c.pool_classes, cmap="tab10", alpha=0.4,
               label="pool")
    if zs.size:
        ps = (zs - mean) @ proj
        ax.scatter(ps[:, 0], ps[:, -1], s=40, marker="*", color="k", label="picks")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend()
    return [(_png(fig), "Pool (coloured by class) and picks (black stars) on the first two "
             "principal components of their embeddings (final checkpoint).")]


def write_campaign_report(
    state_dir: str | Path, out_dir: str | Path | None = None,
    quotas: list[float] | None = None, log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``campaign_report.html`` for a selector state directory.

    Args:
        state_dir: the selector's ``state_dir``.
        out_dir: where to write (default: ``state_dir``).
        quotas: the campaign's class quotas (``selector.class_quotas``), or None.
        log: a function receiving progress lines (default: stderr).

    Raises:
        SelectorError: not a selector state directory (see :func:`load_campaign`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    say = log or (lambda s: print(s, file=sys.stderr))
    c = load_campaign(state_dir)
    out = Path(out_dir) if out_dir is not None else Path(state_dir)
    out.mkdir(parents=True, exist_ok=True)
    st = c.status
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mummi-ml campaign</title>",
        f"<style>{_CSS}</style></head><body><h1>mummi-ml campaign report</h1>",
        f"<p>State directory <code>{html.escape(str(c.state_dir))}</code>; selector "
        f"{html.escape(str(st.get('state')))}, {st.get('n_ranks')} rank(s), model "
        f"<code>{html.escape(str(st.get('model_version')))}</code>, novelty "
        f"{html.escape(str(st.get('novelty')))}.</p>",
        _table(["counter", "value"], [[k, st[k]] for k in (
            "ingested", "accepted", "pooled", "selected", "evicted", "quarantined",
            "quarantined_files", "replayed", "jobs_active") if k in st]),
    ]
    figs: list[tuple[str, str]] = []
    steps = [
        ("picks", lambda: _picks_section(c, plt)),
        ("classes", lambda: ("<h2>Classes</h2>", _class_section(c, quotas, plt))),
        ("covering radius", lambda: _cover_section(c, plt)),
        ("drift", lambda: _drift_section(c, plt)),
        ("operations", lambda: _ops_section(c, plt)),
        ("map", lambda: ("<h2>Map of pool and picks</h2>", _map_section(c, plt))),
    ]
    for i, (name, make) in enumerate(steps, 1):
        say(f"mummi-ml report: [{i}/{len(steps)}] {name}")
        text, new = make()
        parts.append(text)
        for png, caption in new:
            figs.append((png, caption))
            parts.append(_figure(len(figs), png, caption))
    if c.weights is not None:
        w = np.asarray(c.weights.get("weights", []), float)
        if w.size:
            parts.append(f"<p>Importance weights (weights.json, checkpoint "
                         f"{c.weights.get('checkpoint')}): {w.size} picks, min {w.min():.3g}, "
                         f"median {np.median(w):.3g}, max {w.max():.3g} (mean 1).</p>")
    if c.missing:
        parts.append("<h2>Not recorded</h2><ul>" + "".join(
            f"<li>{html.escape(m)}</li>" for m in c.missing) + "</ul>")
    parts.append("</body></html>")
    path = out / REPORT_NAME
    write_text_atomic(path, "\n".join(parts), fsync=False)
    return path
