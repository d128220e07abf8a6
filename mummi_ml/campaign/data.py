"""What a selector state directory records about a campaign, read into typed records.

Reads only files (no MPI, no model): ``status.json``, ``picks.jsonl``, ``jobs/<id>/job.json``
(pick times and model versions), ``jobs.journal``, ``quarantine-rank-*.jsonl``, the checkpoints'
``manifest.json`` and the newest complete checkpoint's pool embeddings (``rank-*.h5``),
``weights.json`` and, when present, ``drift.jsonl``. Every file but status.json is optional; what
is missing is listed in :attr:`Campaign.missing`.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mummi_ml.errors import MummiMLError
from mummi_ml.jsonutil import float_or_inf
from mummi_ml.patch.h5io import open_h5_self_contained
from mummi_ml.selector.checkpoint import latest_checkpoint, load_selected
from mummi_ml.selector.drift import DRIFT_LOG, DriftRecord, read_drift_log
from mummi_ml.selector.errors import SelectorError
from mummi_ml.selector.status import read_status

__all__ = ["Campaign", "PickRecord", "CheckpointPoint", "load_campaign"]


@dataclass(frozen=True)
class PickRecord:
    """One pick: order, id, class, novelty (d_z; inf for the first), time (unix s or None when
    its job.json is missing), the model version that embedded it, its embedding ``z [d]``."""

    seq: int
    id: int
    cls: int
    novelty: float
    time: float | None
    model_version: str | None
    z: np.ndarray


@dataclass(frozen=True)
class CheckpointPoint:
    """A complete checkpoint's manifest: seq, time (unix s), counters (ingested, ...), version."""

    seq: int
    time: float
    counters: dict[str, int]
    model_version: str


@dataclass
class Campaign:
    """Everything the report shows (see the module docstring)."""

    state_dir: Path
    status: dict
    picks: list[PickRecord]
    checkpoints: list[CheckpointPoint]
    groups: list[str]
    pool_z: np.ndarray  # float32 [n, d] newest checkpoint's pool (all ranks)
    pool_classes: np.ndarray  # int64 [n]
    quarantine: Counter  # (code, reason head) -> count
    journal_events: Counter  # job journal event -> count
    weights: dict | None
    drift: list[DriftRecord]
    segments: list[tuple[float, int]] = field(default_factory=list)  # (mtime unix s, patches)
    missing: list[str] = field(default_factory=list)
    #: float32 [m, d]: the newest checkpoint's selected set, in pick order, embedded by the
    #: model in use (re-embedded at every hot swap); empty when there is no checkpoint
    selected_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def _iso_to_unix(s: object) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(s).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # a torn last line
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _picks(state: Path, missing: list[str]) -> list[PickRecord]:
    path = state / "picks.jsonl"
    if not path.is_file():
        missing.append("picks.jsonl (no picks yet)")
        return []
    out = []
    no_job = 0
    for e in _jsonl(path):
        try:
            pid = int(e["id"])
            job = state / "jobs" / str(pid) / "job.json"
            meta = json.loads(job.read_text()) if job.is_file() else {}
            no_job += not meta
            out.append(PickRecord(int(e["seq"]), pid, int(e["cls"]),
                                  float_or_inf(e.get("novelty")), _iso_to_unix(meta.get("time")),
                                  meta.get("model_version"),
                                  np.asarray(e.get("z", []), np.float32)))
        except (KeyError, TypeError, ValueError):
            continue
    if no_job:
        missing.append(f"job.json of {no_job} pick(s) (their time and model version)")
    return sorted(out, key=lambda p: p.seq)


def _checkpoints(state: Path) -> list[CheckpointPoint]:
    out = []
    for man in sorted((state / "checkpoints").glob("ckpt-*/manifest.json")):
        try:
            m = json.loads(man.read_text())
            out.append(CheckpointPoint(int(m["seq"]), float(m["time"]),
                                       {k: int(v) for k, v in m.get("counters", {}).items()},
                                       str(m.get("model_version"))))
        except (OSError, KeyError, TypeError, ValueError):
            continue
    return out


def _pool(found: tuple[Path, dict] | None, missing: list[str]
          ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if found is None:
        missing.append("a complete checkpoint (pool embeddings)")
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), []
    ckpt, man = found
    zs, cs = [], []
    for f in sorted(ckpt.glob("rank-*.h5")):
        with open_h5_self_contained(f, "a checkpoint file") as h:
            if "pool/z" in h:
                zs.append(np.asarray(h["pool/z"], np.float32))
                cs.append(np.asarray(h["pool/classes"], np.int64))
    if not zs:
        missing.append(f"pool embeddings in {ckpt.name}")
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), list(man.get("groups", []))
    return np.concatenate(zs), np.concatenate(cs), list(man.get("groups", []))


def _selected_z(found: tuple[Path, dict] | None, missing: list[str]) -> np.ndarray:
    """The newest checkpoint's selected embeddings ``[m, d]`` (pick order), or ``[0, 0]``."""
    if found is None:
        return np.zeros((0, 0), np.float32)
    try:
        arrays, _ = load_selected(found[0])
    except (MummiMLError, OSError) as exc:
        missing.append(f"the selected set of {found[0].name} ({exc})")
        return np.zeros((0, 0), np.float32)
    return np.asarray(arrays["z"], np.float32)


def _segments(state: Path, limit: int = 20000) -> list[tuple[float, int]]:
    """(mtime, patches) of the payload segments still on disk (one per ingested batch and rank;
    segments no checkpoint refers to any more are deleted), at most ``limit``."""
    out = []
    for f in sorted((state / "payloads").glob("rank-*/seg-*.h5"))[:limit]:
        try:
            with open_h5_self_contained(f, "a payload segment") as h:
                out.append((f.stat().st_mtime, int(h["x"].shape[0])))
        except (OSError, KeyError):
            continue
    return sorted(out)


def load_campaign(state_dir: str | Path) -> Campaign:
    """Read a selector state directory.

    Raises:
        SelectorError: not a directory, or no readable status.json (not a selector state dir).
    """
    state = Path(state_dir)
    if not state.is_dir():
        raise SelectorError(f"{state}: not a directory")
    if not (state / "status.json").is_file():
        raise SelectorError(f"{state}: no status.json (not a selector state directory)")
    try:
        status = read_status(state)
    except (OSError, ValueError) as exc:
        raise SelectorError(f"{state / 'status.json'}: malformed ({exc})") from None
    if not isinstance(status, dict):
        raise SelectorError(f"{state / 'status.json'}: malformed (not an object)")
    missing: list[str] = []
    picks = _picks(state, missing)
    newest = latest_checkpoint(state)  # (directory, manifest) or None
    pool_z, pool_c, groups = _pool(newest, missing)
    quarantine: Counter = Counter()
    for f in sorted(state.glob("quarantine-rank-*.jsonl")):
        for e in _jsonl(f):
            try:
                quarantine[(int(e.get("code", 0)), _reason_head(str(e.get("reason", ""))))] += 1
            except (TypeError, ValueError):
                continue
    journal: Counter = Counter()
    if (state / "jobs.journal").is_file():
        journal.update(str(e.get("event")) for e in _jsonl(state / "jobs.journal"))
    weights = None
    if (state / "weights.json").is_file():
        try:
            weights = json.loads((state / "weights.json").read_text())
        except ValueError:
            missing.append("weights.json (malformed)")
    drift = read_drift_log(state / DRIFT_LOG)
    if not drift:
        missing.append(f"{DRIFT_LOG} (no drift monitor in this campaign)")
    return Campaign(state, status, picks, _checkpoints(state), groups, pool_z, pool_c,
                    quarantine, journal, weights, drift, _segments(state), missing,
                    _selected_z(newest, missing))


def _reason_head(reason: str) -> str:
    """A reason without its patch-specific numbers ("id 250 already seen" -> "id already seen")."""
    words = [w for w in reason.split() if not w.strip(",;:()").lstrip("-").replace(".", "")
             .isdigit()]
    return " ".join(words)[:80]
