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
        f"up {s.get('uptime_s', 0):.0f} s, model {s.get('model_version', '?')}"
        + (f", {len(s['model_versions'])} model versions" if len(s.get("model_versions") or [])
           > 1 else "") + ")",
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
    active = s.get("jobs_active", 0)
    if s.get("state") == "stopped" and active:
        lines.append(f"note         {active} jobs were still active when the selector stopped "
                     "(states as of then; the next start of the selector follows them up)")
    return "\n".join(lines)
