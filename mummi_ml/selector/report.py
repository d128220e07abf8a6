"""Global status of the service: status.json and one log line, from counters summed over ranks
(:meth:`mummi_ml.selector.state.SelectorState.report` sums them)."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from mummi_ml.selector.status import write_status

__all__ = ["build_status", "RateMeter", "ACTIVE_STATES"]

ACTIVE_STATES = ("submitting", "pending", "running")
"""Job states counted in ``jobs_active``: submitted (or being submitted) and not ended."""

log = logging.getLogger("mummi_ml.selector")


@dataclass
class RateMeter:
    """Ingest rate between two reports.

    Attributes:
        last_t: ``time.monotonic()`` of the last report (None: none yet).
        last_ingested: patches ingested (all ranks) at the last report.
    """

    last_t: float | None = None
    last_ingested: int = 0

    def rate(self, ingested: int, since: float) -> float:
        """Patches/s since the last report (or since ``since``, a monotonic time, before the
        first), and remember this one."""
        now = time.monotonic()
        dt = max(1e-9, now - (self.last_t if self.last_t is not None else since))
        r = (ingested - self.last_ingested) / dt
        self.last_t, self.last_ingested = now, ingested
        return r


def build_status(
    sums: dict[str, int], meter: RateMeter, *, label: str, jobs: dict[str, int],
    uptime_s: float, n_ranks: int, selected: int, bytes_per_candidate: int,
    model_version: str, novelty: str, last_checkpoint: dict, state_dir: Path, since: float,
    model_versions: list[dict] | None = None, extra: dict | None = None,
) -> dict:
    """Rank 0: the status record (``sums``: every counter, ``pooled`` and ``pool_bytes`` summed
    over ranks, plus the ``extra`` sections, e.g. the closed loop's ``drift`` and ``retrain``),
    written to ``STATE/status.json`` and logged as one line."""
    rate = meter.rate(sums["ingested"], since)
    ck = dict(last_checkpoint)
    if "time" in ck:
        ck["time_iso"] = _dt.datetime.fromtimestamp(ck["time"], _dt.timezone.utc).isoformat(
            timespec="seconds")
    status = {
        **sums,
        "state": label,
        "time": time.time(),
        "uptime_s": uptime_s,
        "n_ranks": n_ranks,
        "selected": selected,
        "jobs": jobs,
        "jobs_active": sum(jobs.get(k, 0) for k in ACTIVE_STATES),
        "patches_per_s": rate,
        "bytes_per_candidate": bytes_per_candidate,
        "model_version": model_version,
        "model_versions": model_versions or [],
        "novelty": novelty,
        "last_checkpoint": ck,
        "state_dir": str(state_dir),
        **(extra or {}),
    }
    write_status(state_dir, status)
    c = sums
    log.info("%s: ingested %d (%.0f/s), pooled %d, quarantined %d (+%d files), evicted %d, "
             "selected %d, jobs %s", label, c["ingested"], rate, c["pooled"], c["quarantined"],
             c["quarantined_files"], c["evicted"], selected,
             {k: v for k, v in jobs.items() if v})
    return status
