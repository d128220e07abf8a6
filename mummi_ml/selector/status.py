"""``STATE/status.json``: the service's counters, written atomically by rank 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mummi_ml.durable import write_json_atomic
from mummi_ml.selector.errors import SelectorError

__all__ = ["STATUS_NAME", "write_status", "read_status", "check_status", "format_status"]

STATUS_NAME = "status.json"


def write_status(state_dir: str | Path, status: dict[str, Any]) -> Path:
    """Write ``status.json`` (atomically: readers never see half a file; not fsynced)."""
    path = Path(state_dir) / STATUS_NAME
    try:  # e.g. a full disk: no temporary file stays behind
        write_json_atomic(path, status, fsync=False, indent=1, sort_keys=True)
    except OSError as exc:
        raise SelectorError(f"{path}: cannot write the status ({exc.strerror or exc})") from None
    return path


def read_status(state_dir: str | Path) -> dict[str, Any]:
    """The last status of the selector whose state directory is ``state_dir``, checked by
    :func:`check_status` (SelectorError, one line, if it is not valid)."""
    path = Path(state_dir) / STATUS_NAME
    if not path.is_file():
        raise SelectorError(f"{path}: no status file (is {state_dir} a selector state directory?)")
    try:
        status = json.loads(path.read_text())
    except ValueError as exc:  # also UnicodeDecodeError
        raise SelectorError(f"{path}: not valid JSON ({exc})") from None
    return check_status(status, path)


_COUNTS = ("ingested", "accepted", "quarantined", "evicted", "quarantined_files", "replayed",
           "pooled", "pool_bytes", "selected", "n_ranks", "jobs_active", "bytes_per_candidate")
_NUMBERS = ("time", "uptime_s", "patches_per_s")  # patches_per_s may be null: not defined
_STRINGS = ("state", "model_version", "novelty", "state_dir")


def check_status(status: Any, path: str | Path = STATUS_NAME) -> dict[str, Any]:
    """``status`` if every field the service writes has its type, else SelectorError (one
    line naming the field): counts are integers >= 0, times and rates numbers (or null),
    names strings, ``jobs`` a map of state -> count, ``last_checkpoint`` a map with an integer
    ``seq``, a number ``time`` and a string ``time_iso``. Missing fields are allowed (older
    services wrote fewer), unknown ones are left alone."""
    def bad(key: str, want: str, value: Any) -> SelectorError:
        return SelectorError(f"{path}: malformed status: {key!r} should be {want}, got "
                             f"{json.dumps(value)[:60]}")

    def is_count(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    def is_number(v: Any, null: bool = False) -> bool:
        return (null and v is None) or (isinstance(v, (int, float)) and not isinstance(v, bool))

    if not isinstance(status, dict):
        raise SelectorError(f"{path}: malformed status (expected a JSON object, got "
                            f"{type(status).__name__})")
    for key in _COUNTS:
        if key in status and not is_count(status[key]):
            raise bad(key, "an integer >= 0", status[key])
    for key in _NUMBERS:
        if key in status and not is_number(status[key], null=key == "patches_per_s"):
            raise bad(key, "a number", status[key])
    for key in _STRINGS:
        if key in status and not isinstance(status[key], str):
            raise bad(key, "a string", status[key])
    versions = status.get("model_versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, dict) for v in versions):
        raise bad("model_versions", "a list of objects", versions)
    jobs = status.get("jobs", {})
    if not isinstance(jobs, dict) or not all(is_count(v) for v in jobs.values()):
        raise bad("jobs", "a map of job state -> count", jobs)
    ck = status.get("last_checkpoint", {})
    ok = isinstance(ck, dict) and is_count(ck.get("seq", 0)) and is_number(ck.get("time", 0))
    if not ok or not isinstance(ck.get("time_iso", ""), str):
        raise bad("last_checkpoint", "a map with seq, time and time_iso", ck)
    return status


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
