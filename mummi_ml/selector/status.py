"""``STATE/status.json``: the service's counters, written atomically by rank 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mummi_ml.durable import write_json_atomic
from mummi_ml.selector.errors import SelectorError

__all__ = ["STATUS_NAME", "write_status", "read_status", "format_status"]

STATUS_NAME = "status.json"


def write_status(state_dir: str | Path, status: dict[str, Any]) -> Path:
    """Write ``status.json`` (atomically: readers never see half a file; not fsynced)."""
    path = Path(state_dir) / STATUS_NAME
    write_json_atomic(path, status, fsync=False, indent=1, sort_keys=True)
    return path


def read_status(state_dir: str | Path) -> dict[str, Any]:
    """The last status of the selector whose state directory is ``state_dir``."""
    path = Path(state_dir) / STATUS_NAME
    if not path.is_file():
        raise SelectorError(f"{path}: no status file (is {state_dir} a selector state directory?)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise SelectorError(f"{path}: not valid JSON ({exc})") from None


def format_status(s: dict[str, Any]) -> str:
    """A short human-readable report of a status dict."""
    jobs = ", ".join(f"{k} {v}" for k, v in s.get("jobs", {}).items() if v) or "none"
    ck = s.get("last_checkpoint") or {}
    lines = [
        f"state        {s.get('state', '?')} ({s.get('n_ranks', '?')} ranks, "
        f"up {s.get('uptime_s', 0):.0f} s, model {s.get('model_version', '?')})",
        f"ingested     {s.get('ingested', 0)} patches ({s.get('patches_per_s') or 0:.1f}/s, "
        f"{s.get('accepted', 0)} accepted, {s.get('replayed', 0)} replayed copies)",
        f"pooled       {s.get('pooled', 0)} candidates "
        f"({s.get('bytes_per_candidate', 0)} B each in memory)",
        f"quarantined  {s.get('quarantined', 0)} patches, {s.get('quarantined_files', 0)} files"
        + (f", {s['bad_messages']} bad messages" if s.get("bad_messages") else ""),
        f"evicted      {s.get('evicted', 0)}",
        f"selected     {s.get('selected', 0)}",
        f"jobs         {jobs}",
        f"checkpoint   #{ck.get('seq', '-')} at {ck.get('time_iso', '-')}",
    ]
    lines += _loop_lines(s)
    active = s.get("jobs_active", 0)
    if s.get("state") == "stopped" and active:
        lines.append(f"note         {active} jobs were still active when the selector stopped "
                     "(states as of then; the next start of the selector follows them up)")
    return "\n".join(lines)


def _loop_lines(s: dict[str, Any]) -> list[str]:
    """The closed loop's lines (drift window figures and events, snapshots, retraining jobs)."""
    out = []
    d = s.get("drift")
    if isinstance(d, dict):
        last = d.get("last_window") or {}

        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.3g}"

        out.append(f"drift        {d.get('events', 0)} events; current window "
                   f"{d.get('window_arrivals', 0)} of {d.get('window', '?')} arrivals")
        if last:
            out.append(f"  window {last.get('window')}: far {f(last.get('far_fraction'))}, "
                       f"median ratio {f(last.get('median_ratio'))}, class shift "
                       f"{f(last.get('class_shift'))}, invariance "
                       f"{f(last.get('invariance_ratio'))}"
                       + (f" (above: {', '.join(last['exceeded'])})"
                          if last.get("exceeded") else ""))
    r = s.get("retrain")
    if isinstance(r, dict):
        jobs = r.get("jobs") or []
        out.append(f"retrain      reservoir {r.get('reservoir', 0)} of "
                   f"{r.get('reservoir_seen', 0)} arrivals, {r.get('snapshots', 0)} snapshots, "
                   f"{len(jobs)} retraining jobs"
                   + (f" (last: {jobs[-1].get('out')})" if jobs else ""))
    return out
