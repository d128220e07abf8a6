"""``handoff`` backend: a pick is handed over to a workflow manager, not run.

A workflow manager that launches its simulations itself (MuMMI's job tracker, a shell loop)
takes the selector's picks from an *outbox* and answers by an *acknowledgement*. Everything is
files in one directory (``jobs.handoff.dir``, default ``<state_dir>/handoff``), each written by
an atomic operation, so either side may be killed (``kill -9``) at any moment:

``outbox/<name>.json``
    one record per handed-over job (:class:`HandoffRecord`: job name, patch id, producer name,
    class, patch type, novelty, model version, attempt, path of its patch file, the job's argv,
    its number of tasks, time). Written by the selector: temporary file, fsync, ``link`` to the
    final name (fails if the name exists: a job is handed over once), directory fsync.
``taken/<name>``
    the one-time claim of a record: made (exclusive create) by the consumer when it starts the
    work (optional; ``ack``/``fail`` take it if needed), or by :meth:`HandoffBackend.cancel` for a
    record nobody has taken yet. Whoever is first decides.
``ack/<name>.json``
    the answer, ``{"status": "done" | "failed" | "cancelled", "reason", "exit_code", "time"}``:
    written by the consumer (temporary file, fsync, exclusive ``link``), once; a second answer is
    refused.
``cancel/<name>``
    the selector asks the consumer to stop a taken job; the consumer answers ``cancelled``.

A job is ``pending`` (in the outbox), ``running`` (taken), then ``completed`` / ``failed`` /
``cancelled`` (acknowledged). The job emitter counts pending and running jobs against
``jobs.slots``: the slots are the picks handed over and not yet acknowledged (MuMMI's buffer),
and its write-ahead journal makes the hand-over exactly-once across crashes (``find`` looks a
record up by name). :class:`HandoffConsumer` is the consumer's side (list, take, ack, fail);
``mummi-ml handoff list|take|ack|fail`` the same for shell users. Protocol: docs/coupling.md.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mummi_ml.backends.base import JOB_NAME_PATTERN, BackendError, JobBackend, JobInfo, JobState
from mummi_ml.backends.config import JobsConfig
from mummi_ml.durable import fsync_dir
from mummi_ml.errors import MummiMLError

__all__ = [
    "HandoffBackend",
    "HandoffConsumer",
    "HandoffRecord",
    "HandoffAck",
    "HandoffError",
    "ACK_STATUSES",
    "RECORD_SCHEMA",
    "handoff_dir",
]

log = logging.getLogger(__name__)

RECORD_SCHEMA = "mummi-ml-handoff"
RECORD_VERSION = 1
ACK_STATUSES = ("done", "failed", "cancelled")
_STATE_OF_ACK = {"done": JobState.COMPLETED, "failed": JobState.FAILED,
                 "cancelled": JobState.CANCELLED}


class HandoffError(MummiMLError, ValueError):
    """A consumer call that cannot be done: unknown record, already answered, cancelled."""


@dataclass(frozen=True)
class HandoffRecord:
    """One pick handed over (the content of ``outbox/<name>.json``).

    Attributes:
        name: job name (``<prefix><tag>-<patch id>-<attempt>``), the record's key.
        patch_id: the selector's patch id (uint64 as int), None if the job has no ``job.json``.
        producer_name: the producer's name of the patch ("" if it gave none).
        cls: the patch's class / queue index as the selector classified it (-1: unknown).
        patch_type: ``ras<n_ras>raf<n_raf>`` from the protein counts ("" if unknown).
        bin_value: the binning scalar (e.g. RAS-RAS distance, nm), None if none.
        novelty: novelty at the pick (d_z units; inf for a campaign's first pick), or None.
        model_version: version of the metric that picked it ("" if unknown).
        attempt: 1, then +1 per retry of a failed attempt.
        patch_file: absolute path of the patch file (HDF5, one patch) in the job directory.
        job_dir: absolute path of the job directory.
        command: the job's argv from ``jobs.command`` (for a consumer that wants to run it).
        time: when it was handed over (UTC, ISO 8601); t: the same in seconds since the epoch.
        tasks: processes the command runs as (count): above 1, one MPI program whose
            ``COMM_WORLD`` has ``tasks`` ranks, which the consumer launches as such (e.g.
            ``mpiexec -n TASKS COMMAND``); 1 (also for records written before the field existed):
            one process.
    """

    name: str
    patch_id: int | None
    producer_name: str
    cls: int
    patch_type: str
    bin_value: float | None
    novelty: float | None
    model_version: str
    attempt: int
    patch_file: str
    job_dir: str
    command: list[str]
    time: str
    t: float
    tasks: int = 1

    def to_json(self) -> dict[str, Any]:
        """The record as written to the outbox (``cls`` is ``class`` there)."""
        d = asdict(self)
        d["class"] = d.pop("cls")
        if d["novelty"] is not None and d["novelty"] == float("inf"):
            d["novelty"] = "inf"
        return {"schema": RECORD_SCHEMA, "version": RECORD_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HandoffRecord:
        nov = d.get("novelty")
        return cls(
            name=str(d["name"]), patch_id=None if d.get("patch_id") is None else int(d["patch_id"]),
            producer_name=str(d.get("producer_name", "")), cls=int(d.get("class", -1)),
            patch_type=str(d.get("patch_type", "")),
            bin_value=None if d.get("bin_value") is None else float(d["bin_value"]),
            novelty=None if nov is None else float(nov), model_version=str(d.get("model_version",
                                                                                 "")),
            attempt=int(d.get("attempt", 1)), patch_file=str(d.get("patch_file", "")),
            job_dir=str(d.get("job_dir", "")), command=list(d.get("command", [])),
            time=str(d.get("time", "")), t=float(d.get("t", 0.0)),
            tasks=int(d.get("tasks", 1)),
        )


@dataclass(frozen=True)
class HandoffAck:
    """The answer to a record (``ack/<name>.json``)."""

    name: str
    status: str  # one of ACK_STATUSES
    reason: str = ""
    exit_code: int | None = None
    time: float = 0.0


def handoff_dir(cfg: JobsConfig, state_dir: Path) -> Path:
    """The handoff directory: ``jobs.handoff.dir`` (relative: under ``state_dir``)."""
    d = Path(cfg.handoff.dir)
    return d if d.is_absolute() else Path(state_dir) / d


def _write_once(path: Path, data: dict[str, Any]) -> bool:
    """Write ``data`` as JSON to ``path`` atomically and exclusively: a temporary file, fsync,
    ``link`` to the final name, directory fsync. False if ``path`` exists (nothing written)."""
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def _claim() -> dict[str, Any]:
    return {"by": "consumer", "pid": os.getpid(), "t": time.time()}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class _Dirs:
    """The four sub-directories of a handoff directory and the file of each job name."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()
        for sub in ("outbox", "taken", "ack", "cancel"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def outbox(self, name: str) -> Path:
        return self.root / "outbox" / f"{name}.json"

    def taken(self, name: str) -> Path:
        return self.root / "taken" / name

    def ack(self, name: str) -> Path:
        return self.root / "ack" / f"{name}.json"

    def cancel(self, name: str) -> Path:
        return self.root / "cancel" / name

    def read_ack(self, name: str) -> HandoffAck | None:
        d = _read_json(self.ack(name))
        if d is None or d.get("status") not in ACK_STATUSES:
            return None
        code = d.get("exit_code")
        return HandoffAck(name, d["status"], str(d.get("reason", "")),
                          None if code is None else int(code), float(d.get("time", 0.0)))

    def names(self) -> list[str]:
        """Job names of every record in the outbox."""
        return sorted(p.name[:-5] for p in (self.root / "outbox").glob("*.json")
                      if not p.name.startswith("."))


def _pick_facts(job_dir: Path) -> dict[str, Any]:
    """What the job directory says of the pick: ``job.json`` (patch id, novelty, model
    version, attempt) and ``patch.h5`` (producer name, class, counts, binning scalar)."""
    facts: dict[str, Any] = {"patch_id": None, "producer_name": "", "cls": -1,
                             "patch_type": "", "bin_value": None, "novelty": None,
                             "model_version": "", "attempt": 1, "patch_file": ""}
    meta = _read_json(job_dir / "job.json") or {}
    if "patch_id" in meta:
        facts["patch_id"] = int(meta["patch_id"])
    if meta.get("novelty") is not None:
        facts["novelty"] = float(meta["novelty"])
    facts["model_version"] = str(meta.get("model_version", ""))
    facts["attempt"] = int(meta.get("attempt", 1))
    if "class" in meta:
        facts["cls"] = int(meta["class"])
    patch_file = job_dir / "patch.h5"
    if patch_file.exists():
        from mummi_ml.patch import read_patches

        try:
            b = read_patches(patch_file)
        except MummiMLError as exc:
            raise BackendError(f"handoff: cannot read {patch_file}: {exc}") from None
        if len(b) == 1:
            facts["patch_file"] = str(patch_file)
            facts["patch_type"] = f"ras{int(b.y[0, 0])}raf{int(b.y[0, 1])}"
            if b.names is not None:
                facts["producer_name"] = str(b.names[0])
            if b.given_class is not None and int(b.given_class[0]) >= 0:
                facts["cls"] = int(b.given_class[0])
            if b.bin_value is not None and b.bin_value[0] == b.bin_value[0]:  # not NaN
                facts["bin_value"] = float(b.bin_value[0])
    return facts


class HandoffBackend(JobBackend):
    """Hand picks over through an outbox; the consumer acknowledges (see the module doc)."""

    name = "handoff"

    def __init__(self, cfg: JobsConfig, state_dir: Path):
        super().__init__(cfg, state_dir)
        self.dirs = _Dirs(handoff_dir(cfg, self.state_dir))

    @property
    def root(self) -> Path:
        """The handoff directory."""
        return self.dirs.root

    def _submit(self, name: str, argv: list[str], job_dir: Path, tasks: int) -> str:
        if self.dirs.outbox(name).exists():
            raise BackendError(f"job name {name!r}: already handed over "
                               f"({self.dirs.outbox(name)})")
        facts = _pick_facts(job_dir)
        now = time.time()
        rec = HandoffRecord(
            name=name, command=list(argv), job_dir=str(job_dir), tasks=tasks,
            time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), t=now, **facts,
        )
        if not _write_once(self.dirs.outbox(name), rec.to_json()):
            raise BackendError(f"job name {name!r}: already handed over")
        return name

    def _info(self, name: str) -> JobInfo | None:
        if not JOB_NAME_PATTERN.match(name) or not self.dirs.outbox(name).exists():
            return None
        ack = self.dirs.read_ack(name)
        if ack is not None:
            state = _STATE_OF_ACK[ack.status]
            code = 0 if ack.status == "done" else ack.exit_code
            return JobInfo(name, name, state, code, "" if ack.status == "done" else
                           (ack.reason or ack.status))
        if self.dirs.taken(name).exists():
            return JobInfo(name, name, JobState.RUNNING)
        return JobInfo(name, name, JobState.PENDING)

    def _states(self, job_ids: list[str]) -> dict[str, JobInfo]:
        out = {}
        for job_id in job_ids:
            info = self._info(job_id)
            if info is not None:
                out[job_id] = info
        return out

    def _find(self, name: str) -> JobInfo | None:
        return self._info(name)

    def _cancel(self, job_id: str) -> None:
        if not JOB_NAME_PATTERN.match(job_id) or not self.dirs.outbox(job_id).exists():
            raise BackendError(f"job id {job_id!r}: no such handed-over job")
        if self.dirs.ack(job_id).exists():
            return
        if _write_once(self.dirs.taken(job_id), {"by": "cancel", "t": time.time()}):
            _write_once(self.dirs.ack(job_id), {"name": job_id, "status": "cancelled",
                                                "reason": "cancelled before it was taken",
                                                "exit_code": None, "time": time.time()})
        else:  # the consumer has it: ask it to stop
            _write_once(self.dirs.cancel(job_id), {"t": time.time()})


class HandoffConsumer:
    """The workflow manager's side of a handoff directory.

    Args:
        root: the handoff directory (``jobs.handoff.dir``), or a selector state directory
            holding ``handoff/``.

    Every call is safe against a crash of either side: a record is listed until it is
    answered; ``take`` and the answer are exclusive (the first caller wins, the others get a
    :class:`HandoffError`).
    """

    def __init__(self, root: str | Path):
        root = Path(root)
        if not (root / "outbox").is_dir() and (root / "handoff" / "outbox").is_dir():
            root = root / "handoff"
        if not (root / "outbox").is_dir():
            raise HandoffError(f"{root}: not a handoff directory (no outbox/)")
        self.dirs = _Dirs(root)

    @property
    def root(self) -> Path:
        return self.dirs.root

    def record(self, name: str) -> HandoffRecord:
        """The record of job ``name`` (HandoffError if there is none)."""
        if not isinstance(name, str) or not JOB_NAME_PATTERN.match(name):
            raise HandoffError(f"name: expected a job name, got {name!r}")
        d = _read_json(self.dirs.outbox(name))
        if d is None:
            raise HandoffError(f"{name}: no such record in {self.root / 'outbox'}")
        return HandoffRecord.from_json(d)

    def list(self, include_answered: bool = False) -> list[HandoffRecord]:
        """Records not answered yet (with ``include_answered``: every record), oldest first."""
        out = []
        for name in self.dirs.names():
            if not include_answered and self.dirs.ack(name).exists():
                continue
            d = _read_json(self.dirs.outbox(name))
            if d is not None:
                out.append(HandoffRecord.from_json(d))
        return sorted(out, key=lambda r: (r.t, r.name))

    def resolve(self, key: str) -> str:
        """The job name of ``key``: a job name, or the producer name or patch id of exactly one
        record (HandoffError otherwise)."""
        if JOB_NAME_PATTERN.match(key) and self.dirs.outbox(key).exists():
            return key
        hits = [r.name for r in self.list(include_answered=True)
                if r.producer_name == key or (r.patch_id is not None and str(r.patch_id) == key)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise HandoffError(f"{key}: no record with this job name, producer name or patch id")
        raise HandoffError(f"{key}: {len(hits)} records match ({', '.join(hits)}); give the "
                           "job name")

    def is_taken(self, name: str) -> bool:
        return self.dirs.taken(name).exists()

    def answer(self, name: str) -> HandoffAck | None:
        """The answer given to a record, or None."""
        return self.dirs.read_ack(name)

    def cancel_requested(self, name: str) -> bool:
        """True if the selector asked to stop this (taken) job."""
        return self.dirs.cancel(name).exists()

    def take(self, name: str) -> HandoffRecord:
        """Claim a record before starting its work (its job is ``running`` from now on)."""
        rec = self.record(name)
        if not _write_once(self.dirs.taken(name), _claim()):
            ans = self.answer(name)
            why = f"answered {ans.status}" if ans else "taken already"
            raise HandoffError(f"{name}: cannot take it ({why})")
        return rec

    def ack(self, name: str) -> None:
        """Answer ``done``: the simulation of the pick was launched / completed."""
        self._answer(name, "done", "", None)

    def fail(self, name: str, reason: str, exit_code: int | None = None) -> None:
        """Answer ``failed`` with a reason (the emitter retries up to ``jobs.max_retries``)."""
        if not reason:
            raise HandoffError("fail: a reason is required")
        self._answer(name, "failed", reason, exit_code)

    def confirm_cancel(self, name: str) -> None:
        """Answer ``cancelled`` (after a cancel request was honoured)."""
        self._answer(name, "cancelled", "cancelled", None)

    def _answer(self, name: str, status: str, reason: str, exit_code: int | None) -> None:
        self.record(name)
        taken = self.dirs.taken(name)
        if not taken.exists():
            _write_once(taken, _claim())
        claim = _read_json(taken) or {}
        if claim.get("by") == "cancel" and status != "cancelled":
            raise HandoffError(f"{name}: cancelled by the selector before it was taken")
        data = {"name": name, "status": status, "reason": reason,
                "exit_code": exit_code, "time": time.time()}
        if not _write_once(self.dirs.ack(name), data):
            prev = self.answer(name)
            raise HandoffError(f"{name}: already answered "
                               f"({prev.status if prev else 'unreadable answer'})")
