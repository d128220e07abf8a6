"""A workflow manager stand-in for tests: consumes a handoff directory through the public
:class:`~mummi_ml.backends.HandoffConsumer` API and runs each record's command, as MuMMI's job
tracker would launch a simulation (argv list, no shell; stdout/stderr to ``<name>.out/.err`` in
the job directory; a record of several tasks as ``mpiexec -n TASKS COMMAND``, with the mpiexec
the local backend uses), then answers done / failed with the exit code / cancelled.

``python tests/handoff_runner.py DIR`` runs it as a process (killed with -9 by crash tests).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from mummi_ml.backends import HandoffConsumer, HandoffError
from mummi_ml.backends.local import find_mpiexec


class HandoffRunner:
    """Poll ``root`` every ``interval_s`` seconds; run every new record's command."""

    def __init__(self, root: str | Path, interval_s: float = 0.05):
        self.consumer = HandoffConsumer(root)
        self.interval_s = interval_s
        self.running: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> None:
        c = self.consumer
        for rec in c.list():
            if rec.name in self.running:
                continue
            if c.is_taken(rec.name):  # taken by an earlier consumer that died: run it again
                pass
            else:
                try:
                    c.take(rec.name)
                except HandoffError:
                    continue
            job_dir = Path(rec.job_dir)
            command = rec.command
            if rec.tasks > 1:
                command = [find_mpiexec() or "mpiexec", "-n", str(rec.tasks), *command]
            try:
                with open(job_dir / f"{rec.name}.out", "ab") as out, \
                        open(job_dir / f"{rec.name}.err", "ab") as err:
                    self.running[rec.name] = subprocess.Popen(
                        command, cwd=job_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            except OSError as exc:
                c.fail(rec.name, f"cannot start: {exc}", 127)
        for name, proc in list(self.running.items()):
            if c.cancel_requested(name) and proc.poll() is None:
                proc.terminate()
                proc.wait()
                c.confirm_cancel(name)
                del self.running[name]
                continue
            code = proc.poll()
            if code is None:
                continue
            del self.running[name]
            try:
                if code == 0:
                    c.ack(name)
                else:
                    c.fail(name, f"exit code {code}", code)
            except HandoffError:
                pass  # answered meanwhile (e.g. cancelled)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.step()
            time.sleep(self.interval_s)

    def start(self) -> HandoffRunner:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for proc in self.running.values():
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    runner = HandoffRunner(sys.argv[1])
    while True:
        runner.step()
        time.sleep(runner.interval_s)
