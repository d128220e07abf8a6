"""The wrapper of one ``local`` backend job: ``python -m mummi_ml.backends._runner DIR``.

``DIR`` is the job's record directory (``<state_dir>/local/<name>/``) holding ``spec.json`` (argv,
job_dir, tasks, mpiexec). A job of ``tasks > 1`` runs as ``MPIEXEC -n TASKS ARGV`` (``mpiexec``
forwards the runner's SIGTERM to every rank). The runner takes the job's one-time claim (``mkdir
claimed``; if the backend already declared the job lost or cancelled it, the runner exits without
running anything), writes ``started.json`` (its pid and process start time), runs the command in
``job_dir`` with stdout/stderr appended to ``<name>.out``/``<name>.err``, forwards
SIGTERM/SIGINT/SIGHUP to it (SIGKILL after a grace period), and writes ``exit.json`` (exit code,
cancelled flag, signals received) atomically when the command ends. ``cancelled`` is true only when
the backend asked for the cancel (its ``cancel`` marker exists): a signal from anyone else (e.g.
Slurm's SIGTERM to every process of a step at the end of a batch link) is recorded as a kill by that
signal, which the emitter resubmits. The parent service may die at any time: the runner lives in its
own session, so the job and its record survive, and a restarted service finds the job by name. The
command gets the runner's environment less the service's own MPI launch variables
(:mod:`mummi_ml.backends.jobenv`); ``mpiexec`` also gets ``HYDRA_LAUNCHER=fork HYDRA_RMK=user``,
so that MPICH's Hydra starts the ranks on this machine even inside a Slurm allocation. Only the
standard library, :mod:`mummi_ml.durable` and :mod:`mummi_ml.backends.jobenv` are imported here (no
side effects).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from mummi_ml.backends.jobenv import LOCAL_MPIEXEC_SETTINGS, job_environment
from mummi_ml.durable import write_json_atomic

KILL_GRACE_S = 10.0


def proc_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), None if unknown/gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def write_record(path: Path, data: dict) -> None:
    """Write one of the local backend's JSON records atomically, without fsync: these records
    describe processes of this node, which a node crash ends anyway; what must survive a node
    crash (the submission journal, job directories) is fsynced."""
    write_json_atomic(path, data, fsync=False, indent=None)


def main(record_dir: str) -> int:
    rec = Path(record_dir)
    spec = json.loads((rec / "spec.json").read_text())
    job_dir = Path(spec["job_dir"])
    name = spec["name"]
    tasks = int(spec.get("tasks", 1))
    command = spec["argv"] if tasks == 1 else [spec["mpiexec"], "-n", str(tasks), *spec["argv"]]
    env = job_environment()
    if tasks > 1:  # the ranks run here, whatever resource manager mpiexec detects
        env.update(LOCAL_MPIEXEC_SETTINGS)
    cancelled = threading.Event()  # stop: a signal came, or the backend's cancel marker
    received: list[int] = []
    child: subprocess.Popen | None = None

    def stop_child() -> None:
        if child is None or child.poll() is not None:
            return
        child.terminate()

        def kill_later():
            time.sleep(KILL_GRACE_S)
            if child.poll() is None:
                child.kill()

        threading.Thread(target=kill_later, daemon=True).start()

    def on_signal(signum, _frame):
        received.append(signum)
        cancelled.set()
        stop_child()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        (rec / "claimed").mkdir()  # the one-time claim; see local._claim
    except FileExistsError:
        return 0  # declared lost or cancelled before we started: never run it
    # started.json is written after the handlers are in place: a canceller that sees it may signal
    write_record(
        rec / "started.json",
        {"pid": os.getpid(), "start_ticks": proc_start_ticks(os.getpid()), "t": time.time()},
    )
    if (rec / "cancel").exists():  # cancelled before we were ready for signals
        cancelled.set()

    reason = ""
    with open(job_dir / f"{name}.out", "ab") as out, open(job_dir / f"{name}.err", "ab") as err:
        try:
            if not cancelled.is_set():
                child = subprocess.Popen(
                    command, cwd=job_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env=env,
                )
                if cancelled.is_set():  # a signal came between the check and the start
                    stop_child()
        except OSError as exc:
            reason = f"cannot start {command[0]!r}: {exc.strerror or exc}"
            err.write((reason + "\n").encode())
        if child is not None:
            code = child.wait()
        elif cancelled.is_set():
            code = -(received[0] if received else signal.SIGTERM)
        else:
            code = 127
    requested = (rec / "cancel").exists()  # only the backend's own cancel counts as cancelled
    if requested and not reason:
        reason = "cancelled"
    elif received and not reason:
        reason = f"signal {received[0]} from outside (not a requested cancel)"
    write_record(
        rec / "exit.json",
        {"exit_code": code, "cancelled": requested, "signals": received, "reason": reason,
         "t": time.time()},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
