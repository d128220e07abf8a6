"""The outcome wrapper of every MD job.

``python -m mummi_ml.backends.outcome JOB_DIR NAME ATTEMPT -- ARGV...``

The emitter runs each job's argv under this wrapper, on every backend. It writes
``DIR/<NAME>.outcome.json`` twice, each time atomically (temp file, fsync, ``os.replace``, fsync
of the directory): when the command starts (``end`` null) and when it ends (exit code or signal).
The file lives in the job directory, so it outlives whatever the scheduler remembers: a purged
Flux job, a job of an earlier Flux instance (a batch link), a Slurm job aged out of the controller
without accounting, a deleted ``local`` record. The emitter reads it when the backend says
"unknown" (see ``JobEmitter``), so a completed job is never run twice.

The format (``format`` 1)::

    {"format": 1, "name": NAME, "attempt": K, "argv": [...], "host": "...",
     "wrapper_pid": P, "pid": CHILD_PID, "start": T0, "end": T1 | null,
     "exit_code": N | null,      # the command's exit status; -S when killed by signal S
     "signals": [15, ...],       # signals the wrapper received (and forwarded), in order
     "error": ""}                # e.g. the command cannot be started (exit_code 127)

SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 are forwarded to the command (a repeat of the same
signal within 1 s is not forwarded again: a scheduler that signals every process of the job
reaches the command directly and through the wrapper). When the command is killed by a signal the
wrapper ends by the same signal, so the scheduler sees the same wait status. Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from mummi_ml.durable import write_json_atomic

__all__ = ["OUTCOME_FORMAT", "FORWARDED", "outcome_path", "read_outcome", "wrap", "main"]

OUTCOME_FORMAT = 1
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
_REPEAT_S = 1.0


def outcome_path(job_dir: Path, name: str) -> Path:
    """``<job_dir>/<name>.outcome.json``: the outcome of one attempt."""
    return Path(job_dir) / f"{name}.outcome.json"


def read_outcome(job_dir: Path, name: str) -> dict | None:
    """The outcome record of attempt ``name``, or None if absent, unreadable or of another job."""
    try:
        data = json.loads(outcome_path(job_dir, name).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("name") != name:
        return None
    return data


def wrap(argv: list[str], job_dir: Path, name: str, attempt: int) -> list[str]:
    """The argv that runs ``argv`` under this wrapper (list in, list out: never a shell string)."""
    return [sys.executable, "-m", "mummi_ml.backends.outcome", str(job_dir), name, str(attempt),
            "--", *argv]  # fmt: skip


def _write(path: Path, data: dict) -> None:
    write_json_atomic(path, data, fsync=True, indent=None)


def main(args: list[str]) -> int:
    if len(args) < 5 or args[3] != "--":
        print("usage: python -m mummi_ml.backends.outcome JOB_DIR NAME ATTEMPT -- ARGV...",
              file=sys.stderr)  # fmt: skip
        return 2
    job_dir, name, attempt, argv = Path(args[0]), args[1], int(args[2]), args[4:]
    path = outcome_path(job_dir, name)
    record = {
        "format": OUTCOME_FORMAT, "name": name, "attempt": attempt, "argv": argv,
        "host": socket.gethostname(), "wrapper_pid": os.getpid(), "pid": None,
        "start": time.time(), "end": None, "exit_code": None, "signals": [], "error": "",
    }  # fmt: skip
    child: subprocess.Popen | None = None
    last: dict[int, float] = {}

    def on_signal(signum: int, _frame) -> None:
        record["signals"].append(signum)
        now = time.monotonic()
        repeat = now - last.get(signum, -1e9) < _REPEAT_S
        last[signum] = now
        if child is not None and child.poll() is None and not repeat:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    for sig in FORWARDED:
        signal.signal(sig, on_signal)
    try:
        child = subprocess.Popen(argv, cwd=job_dir, stdin=subprocess.DEVNULL)
    except OSError as exc:
        record["error"] = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        print(record["error"], file=sys.stderr)
        record.update(exit_code=127, end=time.time())
        _write(path, record)
        return 127
    record["pid"] = child.pid
    if record["signals"]:  # a signal came before the command existed: it never saw it
        child.send_signal(record["signals"][-1])
    _write(path, record)
    while True:
        try:
            code = child.wait()
            break
        except InterruptedError:  # pragma: no cover (PEP 475 retries; kept for safety)
            continue
    record.update(exit_code=code, end=time.time())
    _write(path, record)
    if code < 0:  # end the way the command ended, so the scheduler sees the same status
        sig = -code
        try:
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            time.sleep(1.0)
        except (OSError, ValueError):
            pass
        return 128 + sig
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
