"""The job emitter: one MD job per picked patch, exactly once across crashes, bounded retries.

For a pick, :meth:`JobEmitter.emit`

1. creates the job directory ``<jobs_root>/<patch id>/`` (built under a temporary name with
   ``patch.h5`` and ``job.json``, then renamed into place: it exists whole or not at all; a job
   directory is never created twice),
2. appends the intent (job name, patch id, attempt) to the write-ahead :class:`Journal`
   (flushed + fsynced) BEFORE the backend hears of the job,
3. submits the command (the ``jobs.command`` argv template, each element formatted on its own),
4. appends the backend's job id.

:meth:`JobEmitter.recover` replays the journal after a restart: an intent with no job id is looked
up with ``backend.find(name)`` and adopted if the backend has it, submitted otherwise; a job
directory with no intent (a crash between 1 and 2) gets its intent and job then. Job names are
``<prefix><tag>-<patch id>-<attempt>`` (tag: from the state directory), so every attempt of every
campaign has its own name. States are
``submitting`` (intent written, job id not known), ``pending``, ``running``, ``completed``,
``failed`` (after ``max_retries`` resubmissions), ``cancelled``.

Every job runs under the outcome wrapper (:mod:`mummi_ml.backends.outcome`), which writes
``<job dir>/<job name>.outcome.json`` when the command starts and ends. When the backend no longer
knows a job (a Flux purge, a new Flux instance, a Slurm job aged out of the controller, a deleted
local record), the emitter takes the outcome from that file: a completed job is recorded completed
and never run again. Only a cancel asked for with :meth:`JobEmitter.cancel` ends a job as
``cancelled``; a job ended by anyone else's cancel or by an interrupting signal (SIGTERM, SIGINT,
SIGHUP, SIGKILL: the end of a batch link) is *interrupted* and resubmitted without being charged
against ``max_retries`` (at most :data:`MAX_INTERRUPTIONS` times per patch).
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mummi_ml.backends.base import BackendError, JobBackend, JobInfo, JobRejectedError, JobState
from mummi_ml.backends.config import JobsConfig
from mummi_ml.backends.jobdir import PATCH_FILE, JobDirError, JobDirs
from mummi_ml.backends.journal import Journal
from mummi_ml.backends.outcome import read_outcome, wrap
from mummi_ml.errors import MummiMLError
from mummi_ml.patch import PatchBatch

__all__ = ["JobEmitter", "JobRecord", "EmitterError", "JobWaitTimeout", "JOB_STATES"]

log = logging.getLogger(__name__)

JOB_STATES = ("submitting", "pending", "running", "completed", "failed", "cancelled")
_TERMINAL = ("completed", "failed", "cancelled")
JOURNAL_NAME = "jobs.journal"
#: resubmissions of one patch after interruptions (not charged to max_retries) before it counts
#: as failed attempts again: a bound on a job that something kills every time
MAX_INTERRUPTIONS = 20
#: an attempt killed by one of these (not asked for by the emitter) was interrupted, not failed
INTERRUPT_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGTERM})
#: backend reasons that are the job's own doing even when it ended by a signal
_CHARGED_WORDS = ("timeout", "time limit", "out_of_memory", "oom", "deadline")


class EmitterError(JobDirError):
    """Bad input to the emitter (batch size, patch id, no free slot) or a bad job directory."""


class JobWaitTimeout(MummiMLError, TimeoutError):
    """:meth:`JobEmitter.wait` ran out of time with jobs still active."""


@dataclass
class JobRecord:
    """The emitter's view of the job of one patch (its current attempt).

    Attributes:
        patch_id: id of the patch (uint64 as int).
        name: scheduler job name of the current attempt.
        attempt: 1 for the first submission, +1 per retry.
        job_id: backend job id of the current attempt, None while unknown.
        state: one of :data:`JOB_STATES`.
        exit_code: exit code of the last ended attempt, if known.
        reason: why the last attempt failed, "" otherwise.
        interruptions: attempts ended by an interruption (not charged to ``max_retries``).
        cancel_requested: :meth:`JobEmitter.cancel` was called for the current attempt.
    """

    patch_id: int
    name: str
    attempt: int = 1
    job_id: str | None = None
    state: str = "submitting"
    exit_code: int | None = None
    reason: str = ""
    interruptions: int = 0
    cancel_requested: bool = False

    @property
    def active(self) -> bool:
        return self.state not in _TERMINAL


class JobEmitter:
    """Turn picks into MD jobs on ``backend`` with exactly-once submission.

    Args:
        backend: a job backend (:func:`mummi_ml.backends.make_backend`).
        jobs_cfg: the ``jobs:`` config (slots, command template, retries, jobs_root).
        state_dir: the service's state directory; holds ``jobs.journal`` and, by default,
            ``jobs/`` (``jobs_cfg.jobs_root`` if relative is taken under it).
    """

    def __init__(self, backend: JobBackend, jobs_cfg: JobsConfig, state_dir: Path):
        self.backend = backend
        self.cfg = jobs_cfg
        self.state_dir = Path(state_dir).absolute()
        root = Path(jobs_cfg.jobs_root)
        self.dirs = JobDirs(root if root.is_absolute() else self.state_dir / root)
        self.jobs_root = self.dirs.root
        self.journal = Journal(self.state_dir / JOURNAL_NAME)
        self.tag = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:6]
        self.records: dict[int, JobRecord] = {}
        self._finished: list[dict[str, Any]] = []  # ended during wait(), handed out by poll()
        self._recovered = False

    # ---- paths and commands --------------------------------------------------------------------

    def job_dir(self, patch_id: int) -> Path:
        """``<jobs_root>/<patch id>/`` for a patch id (validated: an integer in [0, 2**64))."""
        return self.dirs.path(patch_id)

    def job_name(self, patch_id: int, attempt: int) -> str:
        """Scheduler job name of one attempt: ``<prefix><tag>-<patch id>-<attempt>``.

        ``tag`` (6 hex digits of a hash of the state directory) keeps the names of two campaigns
        on one cluster apart, so ``find(name)`` never adopts another campaign's job.
        """
        return f"{self.cfg.name_prefix}{self.tag}-{int(patch_id)}-{int(attempt)}"

    def command(self, patch_id: int) -> list[str]:
        """The job's argv: each template element formatted separately (no shell)."""
        job_dir = self.job_dir(patch_id)
        values = {
            "job_dir": str(job_dir),
            "patch_file": str(job_dir / PATCH_FILE),
            "patch_id": str(int(patch_id)),
            "python": sys.executable,
            "duration_us": repr(float(self.cfg.duration_us)),
        }
        return [element.format(**values) for element in self.cfg.command]

    def _campaign_of(self, patch_id: int) -> str | None:
        """The campaign tag in a job directory's ``job.json`` (None if unreadable or absent)."""
        return (self.dirs.read_meta(patch_id) or {}).get("campaign")

    # ---- public API ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Rebuild the job records from the journal and reconcile them with the backend.

        Intents without a job id are looked up by name (``backend.find``) and adopted; one the
        backend does not know is settled from its outcome file if it ran, else submitted; job
        directories without an intent get one; half-built directories (a crash while writing
        them) are removed. Finished and failed states are restored as they were; jobs that were
        active are asked for once, so those that ended meanwhile are settled now (and handed out
        by the next :meth:`poll`).
        """
        self._recovered = True
        self.records.clear()
        for event in self.journal.replay():
            self._apply(event)
        self.dirs.remove_half_built()
        orphans = []
        for pid in self.dirs.patch_ids():
            if pid in self.records:
                continue
            owner = self._campaign_of(pid)
            if owner == self.tag:
                orphans.append(pid)
            else:  # e.g. a jobs_root shared with another campaign: never run its jobs
                log.warning("job dir of patch %d belongs to campaign %r, not %r: left alone",
                            pid, owner, self.tag)
        self._compact()
        for pid in orphans:
            log.warning("job dir of patch %d has no journal intent: submitting it now", pid)
            self._start_attempt(pid, 1)
        for rec in list(self.records.values()):
            if rec.state == "submitting":
                self._reconcile(rec)
        self._refresh()  # jobs that ended (or were forgotten) while no service watched them
        log.info("recovered %d jobs: %s", len(self.records), self.counts())

    def free_slots(self) -> int:
        """``jobs.slots`` minus the active (submitting, pending or running) jobs; may be < 0."""
        self._check_recovered()
        return self.cfg.slots - sum(rec.active for rec in self.records.values())

    def emitted(self, patch_id: int) -> bool:
        """True if the patch already has a job (any state)."""
        return int(patch_id) in self.records

    def emit(self, patch: PatchBatch, novelty: float, model_version: str) -> str:
        """Create the job of one picked patch and submit it; returns the job name.

        Args:
            patch: a batch of exactly one patch.
            novelty: its novelty at the pick (units of d_z), recorded in ``job.json``.
            model_version: version of the metric that picked it, recorded in ``job.json``.

        A patch that already has a job is not emitted again: its job name is returned.
        Raises EmitterError when no slot is free or the batch is not one patch.
        """
        self._check_recovered()
        if not isinstance(patch, PatchBatch) or len(patch) != 1:
            got = len(patch) if isinstance(patch, PatchBatch) else type(patch).__name__
            raise EmitterError(f"patch: expected a PatchBatch of 1 patch, got {got}")
        pid = int(patch.ids[0])
        job_dir = self.job_dir(pid)
        if pid in self.records:
            log.info("patch %d already has job %s: not emitted again", pid, self.records[pid].name)
            return self.records[pid].name
        if self.free_slots() <= 0:
            active = self.cfg.slots - self.free_slots()
            raise EmitterError(
                f"emit: no free MD slot (jobs.slots={self.cfg.slots}, active={active})"
            )
        if job_dir.exists():
            owner = self._campaign_of(pid)
            if owner != self.tag:
                raise EmitterError(f"emit: {job_dir} belongs to campaign {owner!r}, not "
                                   f"{self.tag!r} (is jobs_root shared with another campaign?)")
            # a crash after the directory was made but before the intent: reuse it as it is
            log.warning("job dir %s exists without a journal intent: reusing it", job_dir)
        else:
            meta = JobDirs.meta(patch, novelty, model_version, self.backend.name)
            self.dirs.create(patch, {**meta, "campaign": self.tag})
        return self._start_attempt(pid, 1).name

    def poll(self) -> list[dict[str, Any]]:
        """Update job states; retry failed attempts; return jobs that ended since the last call.

        Each returned dict has ``patch_id``, ``name``, ``state`` (completed / failed /
        cancelled), ``attempts``, ``exit_code`` and ``reason``.
        """
        self._check_recovered()
        for rec in [r for r in self.records.values() if r.state == "submitting"]:
            self._reconcile(rec)
        self._refresh()
        out, self._finished = self._finished, []
        return out

    def cancel(self, patch_id: int) -> bool:
        """Cancel the job of a patch for good: it ends ``cancelled`` and is never resubmitted.

        The request is journalled before the backend hears of it, so a crash in between still
        ends the job as cancelled after :meth:`recover`. Returns False if the patch has no active
        job (unknown patch, or its job ended already). A job that completes before the cancel
        takes effect is recorded completed.
        """
        self._check_recovered()
        rec = self.records.get(int(patch_id))
        if rec is None or not rec.active:
            return False
        self.journal.append({"event": "cancel", "name": rec.name, "patch_id": rec.patch_id})
        rec.cancel_requested = True
        if rec.job_id is None:
            self._reconcile(rec)  # finds the job (then cancels it) or ends the record now
        else:
            self._cancel_backend(rec)
        return True

    def counts(self) -> dict[str, int]:
        """Number of jobs (patches) by state, every state of :data:`JOB_STATES` present."""
        counts = dict.fromkeys(JOB_STATES, 0)
        for rec in self.records.values():
            counts[rec.state] += 1
        return counts

    def wait(self, timeout_s: float) -> None:
        """Poll until no job is active; raise :class:`JobWaitTimeout` after ``timeout_s`` (s).

        Jobs that end meanwhile are returned by the next :meth:`poll`.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            ended = self.poll()
            self._finished = ended + self._finished
            active = [r.name for r in self.records.values() if r.active]
            if not active:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise JobWaitTimeout(
                    f"wait: {len(active)} jobs still active after {timeout_s} s (e.g. {active[0]})"
                )
            time.sleep(min(self.cfg.poll_interval_s, left))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job record as a dict (for status reports)."""
        return [asdict(r) for r in self.records.values()]

    def close(self) -> None:
        """Close the journal and the backend (jobs keep running)."""
        self.journal.close()
        self.backend.close()

    # ---- internals -------------------------------------------------------------------------------

    def _check_recovered(self) -> None:
        if not self._recovered:
            self.recover()

    def _start_attempt(
        self, pid: int, attempt: int, last_exit: int | None = None, last_reason: str = "",
        interruptions: int = 0,
    ) -> JobRecord:
        """Journal the intent of attempt ``attempt`` of patch ``pid``, then submit it."""
        rec = JobRecord(pid, self.job_name(pid, attempt), attempt, None, "submitting",
                        last_exit, last_reason, interruptions)  # fmt: skip
        event = {"event": "intent", "name": rec.name, "patch_id": pid, "attempt": attempt}
        if attempt > 1:
            event.update(last_exit_code=last_exit, last_reason=last_reason,
                         interruptions=interruptions)  # fmt: skip
        self.journal.append(event)
        self.records[pid] = rec
        if attempt > 1:
            self.dirs.update_meta(pid, attempt=attempt)
        self._submit(rec)
        return rec

    def _refresh(self) -> None:
        """One state query for every active job with a job id; settle those that ended."""
        watched = [r for r in self.records.values() if r.active and r.job_id is not None]
        try:
            infos = self.backend.states([r.job_id for r in watched]) if watched else {}
        except BackendError as exc:  # a scheduler hiccup must not kill the service: next poll
            log.warning("job states not available now: %s", exc)
            infos = {}
        for rec in watched:
            if rec.job_id in infos:
                self._update(rec, infos[rec.job_id])

    def _cancel_backend(self, rec: JobRecord) -> None:
        try:
            self.backend.cancel(rec.job_id)
        except BackendError as exc:  # the journalled request stands; the next poll tells
            log.warning("cancel of %s failed now (%s); its end will be recorded cancelled",
                        rec.name, exc)  # fmt: skip

    def _submit(self, rec: JobRecord) -> None:
        job_dir = self.job_dir(rec.patch_id)
        argv = wrap(self.command(rec.patch_id), job_dir, rec.name, rec.attempt)
        try:
            job_id = self.backend.submit(rec.name, argv, job_dir)
        except BackendError as exc:
            log.warning("submit of %s failed: %s", rec.name, exc)
            rec.reason = f"submit failed: {exc}"
            if isinstance(exc, JobRejectedError):  # the same request can never be accepted
                self._final(rec, "failed", None, rec.reason)
                return
            try:
                info = self.backend.find(rec.name)  # did it get through after all?
            except BackendError:
                return  # unknown: stays 'submitting', reconciled on the next poll
            if info is not None:
                self._adopt(rec, info)
            else:
                self._attempt_failed(rec, None, rec.reason)
            return
        self.journal.append({"event": "submitted", "name": rec.name, "job_id": job_id})
        rec.job_id, rec.state = job_id, "pending"

    def _adopt(self, rec: JobRecord, info: JobInfo) -> None:
        log.info(
            "adopting %s: the backend has it as %s (%s)", rec.name, info.job_id, info.state.value
        )
        self.journal.append(
            {"event": "submitted", "name": rec.name, "job_id": info.job_id, "adopted": True}
        )
        rec.job_id, rec.state = info.job_id, "pending"
        if rec.cancel_requested and info.state.value in ("pending", "running"):
            self._cancel_backend(rec)
        self._update(rec, info)

    def _reconcile(self, rec: JobRecord) -> None:
        """An intent without a job id: adopt the backend's job of that name, else submit.

        If the backend cannot answer now, the record stays ``submitting`` for the next poll.
        """
        try:
            info = self.backend.find(rec.name)
        except BackendError as exc:
            log.warning("cannot look up %s now (%s); will retry", rec.name, exc)
            return
        if info is not None:
            self._adopt(rec, info)
            return
        # The backend does not know the name: the job never reached it, or it ran and the
        # backend forgot it (purged, an earlier Flux instance, aged out). Its outcome file tells.
        outcome = read_outcome(self.job_dir(rec.patch_id), rec.name)
        if rec.cancel_requested:
            if outcome is not None and outcome.get("end") is not None \
                    and outcome.get("exit_code") == 0:
                self._final(rec, "completed", 0, "")
            else:
                self._final(rec, "cancelled", None, "cancelled before it reached the backend")
        elif outcome is not None:
            log.warning("%s: the backend does not know it, but it ran (outcome file)", rec.name)
            self._update(rec, JobInfo(rec.name, "", JobState.UNKNOWN, reason="not found"))
        else:
            log.info("%s: intent never reached the backend; submitting it now", rec.name)
            self._submit(rec)

    def _update(self, rec: JobRecord, info: JobInfo) -> None:
        state = info.state
        if state in (JobState.PENDING, JobState.RUNNING):
            rec.state = state.value
        elif state == JobState.COMPLETED:
            self._final(rec, "completed", info.exit_code, "")
        else:  # FAILED, CANCELLED, or UNKNOWN (the backend forgot it)
            self._ended(rec, info)

    def _ended(self, rec: JobRecord, info: JobInfo) -> None:
        """Settle an attempt that did not end completed by the backend's account.

        The outcome file decides first (exit 0: completed, whatever the scheduler lost or said);
        then a cancel the emitter asked for (cancelled); then interrupted (resubmitted, not
        charged) or failed (charged to ``max_retries``).
        """
        outcome = read_outcome(self.job_dir(rec.patch_id), rec.name)
        ended = outcome is not None and outcome.get("end") is not None
        if ended and outcome.get("exit_code") == 0:
            if info.state != JobState.COMPLETED:
                log.warning("%s: backend says %s (%s) but its outcome file says exit 0: "
                            "recorded completed", rec.name, info.state.value, info.reason)
            self._final(rec, "completed", 0, "")
            return
        code = info.exit_code
        if code is None and ended:
            code = outcome.get("exit_code")
        reason = info.reason or info.state.value
        if rec.cancel_requested:
            self._final(rec, "cancelled", code, "cancelled")
            return
        if info.permanent:  # FAILED for good (an unsatisfiable request): no retry
            self._final(rec, "failed", code, info.reason)
            return
        interrupted = _interrupted(info, code, outcome)
        if interrupted and rec.interruptions < MAX_INTERRUPTIONS:
            why = _describe(info, code, outcome)
            log.warning("%s interrupted (%s): resubmitting it, not charged to max_retries",
                        rec.name, why)  # fmt: skip
            self._start_attempt(rec.patch_id, rec.attempt + 1, code, f"interrupted: {why}",
                                interruptions=rec.interruptions + 1)  # fmt: skip
            return
        if info.state == JobState.UNKNOWN and outcome is None:
            reason = "not found by the backend and no outcome file"
        self._attempt_failed(rec, code, reason)

    def _attempt_failed(self, rec: JobRecord, exit_code: int | None, reason: str) -> None:
        if rec.attempt - rec.interruptions <= self.cfg.max_retries:
            # No separate "ended" event: the next intent supersedes the failed attempt. A crash
            # before it is written leaves the failed attempt in the journal, and the next poll
            # after recovery sees it failed again and retries then.
            log.warning("%s failed (%s); retry %d of %d", rec.name, reason, rec.attempt,
                        self.cfg.max_retries)  # fmt: skip
            self._start_attempt(rec.patch_id, rec.attempt + 1, exit_code, reason,
                                interruptions=rec.interruptions)  # fmt: skip
        else:
            log.error("%s failed (%s) after %d attempts: recorded failed", rec.name, reason,
                      rec.attempt)  # fmt: skip
            self._final(rec, "failed", exit_code, reason)

    def _final(self, rec: JobRecord, state: str, exit_code: int | None, reason: str) -> None:
        self.journal.append(
            {"event": "final", "patch_id": rec.patch_id, "name": rec.name, "state": state,
             "attempts": rec.attempt, "exit_code": exit_code, "reason": reason}
        )  # fmt: skip
        rec.state, rec.exit_code, rec.reason = state, exit_code, reason
        self._finished.append(
            {"patch_id": rec.patch_id, "name": rec.name, "state": state, "attempts": rec.attempt,
             "exit_code": exit_code, "reason": reason}
        )  # fmt: skip

    def _apply(self, event: dict[str, Any]) -> None:
        """Replay one journal event into the records."""
        kind = event["event"]
        if kind == "intent":
            pid = int(event["patch_id"])
            self.records[pid] = JobRecord(
                pid, event["name"], int(event["attempt"]), None, "submitting",
                event.get("last_exit_code"), event.get("last_reason", ""),
                int(event.get("interruptions", 0)),
            )  # fmt: skip
            return
        pid = int(event["patch_id"]) if "patch_id" in event else self._pid_of(event["name"])
        rec = self.records.get(pid)
        if rec is None or rec.name != event["name"]:
            return  # an event of an older attempt
        if kind == "submitted":
            rec.job_id, rec.state = str(event["job_id"]), "pending"
        elif kind == "cancel":
            rec.cancel_requested = True
        elif kind == "final":
            rec.state = event["state"]
            rec.exit_code, rec.reason = event.get("exit_code"), event.get("reason", "")

    def _pid_of(self, name: str) -> int:
        for pid, rec in self.records.items():
            if rec.name == name:
                return pid
        return -1

    def _compact(self) -> None:
        """Rewrite the journal with only what the records need (bounded size across restarts)."""
        events: list[dict[str, Any]] = []
        for rec in self.records.values():
            intent = {"event": "intent", "name": rec.name, "patch_id": rec.patch_id,
                      "attempt": rec.attempt}  # fmt: skip
            if rec.attempt > 1:
                intent.update(last_exit_code=rec.exit_code, last_reason=rec.reason,
                              interruptions=rec.interruptions)  # fmt: skip
            events.append(intent)
            if rec.job_id is not None:
                events.append({"event": "submitted", "name": rec.name, "job_id": rec.job_id})
            if rec.cancel_requested and rec.active:
                events.append({"event": "cancel", "name": rec.name, "patch_id": rec.patch_id})
            if not rec.active:
                events.append(
                    {"event": "final", "patch_id": rec.patch_id, "name": rec.name,
                     "state": rec.state, "attempts": rec.attempt, "exit_code": rec.exit_code,
                     "reason": rec.reason}
                )  # fmt: skip
        self.journal.rewrite(events)


def _interrupted(info: JobInfo, code: int | None, outcome: dict | None) -> bool:
    """Did the attempt end because something outside stopped it (not by its own failure)?

    Yes when the backend forgot it, when someone other than the emitter cancelled it, when it
    was killed by one of :data:`INTERRUPT_SIGNALS`, or when its wrapper received one of them
    before the command ended (a command that exits non-zero on SIGTERM); no when the backend's
    reason is the job's own doing (time limit, out of memory).
    """
    text = (info.reason or "").lower()
    if any(word in text for word in _CHARGED_WORDS):
        return False
    if info.state in (JobState.UNKNOWN, JobState.CANCELLED):
        return True
    if code is not None and code < 0 and -code in INTERRUPT_SIGNALS:
        return True
    received = (outcome or {}).get("signals") or []
    return any(s in INTERRUPT_SIGNALS for s in received)


def _describe(info: JobInfo, code: int | None, outcome: dict | None) -> str:
    if info.state == JobState.UNKNOWN:
        return "the backend forgot it" + ("" if outcome else " before it left any outcome")
    if info.state == JobState.CANCELLED:
        return f"cancelled from outside the emitter ({info.reason or 'cancelled'})"
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"signal {(outcome or {}).get('signals')} then exit code {code}"
