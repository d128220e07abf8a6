"""Global status of the service: counters summed over ranks, status.json, one log line."""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any

import numpy as np

from mummi_ml.selector.collectives import allreduce_sum
from mummi_ml.selector.state import COUNTERS
from mummi_ml.selector.status import write_status

__all__ = ["build_status", "ACTIVE_STATES"]

ACTIVE_STATES = ("submitting", "pending", "running")
"""Job states counted in ``jobs_active``: submitted (or being submitted) and not ended."""

log = logging.getLogger("mummi_ml.selector")


def build_status(svc: Any, state: str) -> dict:
    """Sum the counters over ranks (collective); rank 0 writes status.json and logs a line."""
    ing = svc.ingestor
    local = [int(ing.counters.get(k, 0)) for k in COUNTERS] + [len(svc.pool), svc.pool.nbytes]
    tot = allreduce_sum(svc.comm, np.array(local, dtype=np.int64)).tolist()
    c = dict(zip([*COUNTERS, "pooled", "pool_bytes"], tot, strict=True))
    if svc.rank != 0:
        return c
    now = time.monotonic()
    dt = max(1e-9, now - svc._last.get("report_t", svc._last["ckpt"]))
    rate = (c["ingested"] - svc._last["ingested"]) / dt
    svc._last["ingested"], svc._last["report_t"] = c["ingested"], now
    ck = dict(svc.last_checkpoint)
    if "time" in ck:
        ck["time_iso"] = _dt.datetime.fromtimestamp(ck["time"], _dt.timezone.utc).isoformat(
            timespec="seconds")
    jobs = svc.emitter.counts() if svc.emitter is not None else {}
    status = {
        **c,
        "state": state,
        "time": time.time(),
        "uptime_s": time.time() - svc.t_start,
        "n_ranks": svc.size,
        "selected": len(svc.selected),
        "jobs": jobs,
        "jobs_active": sum(jobs.get(k, 0) for k in ACTIVE_STATES),
        "patches_per_s": rate,
        "bytes_per_candidate": svc.pool.bytes_per_candidate,
        "model_version": svc.emb.version,
        "novelty": svc.s.novelty,
        "last_checkpoint": ck,
        "state_dir": str(svc.state_dir),
    }
    write_status(svc.state_dir, status)
    log.info("%s: ingested %d (%.0f/s), pooled %d, quarantined %d (+%d files), evicted %d, "
             "selected %d, jobs %s", state, c["ingested"], rate, c["pooled"], c["quarantined"],
             c["quarantined_files"], c["evicted"], len(svc.selected),
             {k: v for k, v in status["jobs"].items() if v})
    return status
