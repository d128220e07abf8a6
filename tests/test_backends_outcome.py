"""Completion that survives the scheduler forgetting, and interruptions that are not cancels.

Every job runs under the outcome wrapper (``<job dir>/<name>.outcome.json``). A job the backend
forgot (a Flux purge, a deleted local record, a Slurm id the controller no longer knows) is
settled from that file and never run twice; a job killed from outside (a signal or a cancel the
emitter did not ask for, as at the end of a batch link) is resubmitted without being charged;
a job cancelled through ``JobEmitter.cancel`` stays cancelled. Real local processes, real Slurm,
real Flux (``flux_instance``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend

from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
from mummi_ml.backends.outcome import read_outcome, wrap
from mummi_ml.patch import PatchBatch

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# appends one line per run to runs.txt; the first run sleeps (to be interrupted), later ones not
RUN_ONCE_SLOW = [
    "{python}", "-c",
    "import os, sys, time; p = sys.argv[1] + '/runs.txt'; first = not os.path.exists(p); "
    "open(p, 'a').write('run\\n'); time.sleep(30 if first else 0)",
    "{job_dir}",
]  # fmt: skip
RECORD_RUN = ["{python}", "-c", "import sys; open(sys.argv[1] + '/runs.txt', 'a').write('run\\n')",
              "{job_dir}"]  # fmt: skip


def make_patch(pid: int) -> PatchBatch:
    x = np.random.default_rng(pid).random((1, 37, 37, 14), dtype=np.float32)
    return PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([pid], np.uint64))


def jobs_cfg(state: Path, backend: str, **cfg) -> JobsConfig:
    cfg.setdefault("command", RECORD_RUN)
    cfg.setdefault("poll_interval_s", 0.1)
    cfg.setdefault("name_prefix", f"o{abs(hash(str(state))) % 10**8}-")  # unique on Slurm
    return JobsConfig(backend=backend, **cfg)


def make_emitter(state: Path, backend: str, **cfg) -> JobEmitter:
    jc = jobs_cfg(state, backend, **cfg)
    emitter = JobEmitter(make_backend(jc, state), jc, state)
    emitter.recover()
    return emitter


def runs(emitter: JobEmitter, pid: int) -> int:
    path = emitter.job_dir(pid) / "runs.txt"
    return len(path.read_text().split()) if path.exists() else 0


def wait_for(check, timeout_s: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=["local", "slurm", "flux"])
def backend_name(request):
    require_backend(request, request.param)
    return request.param


# ---- the wrapper ------------------------------------------------------------------------------


def test_the_wrapper_records_the_exit_code_and_passes_it_on(tmp_path):
    argv = wrap([PY, "-c", "import sys; sys.exit(3)"], tmp_path, "job-a-1", 1)
    assert subprocess.run(argv, timeout=20).returncode == 3
    out = read_outcome(tmp_path, "job-a-1")
    assert out["exit_code"] == 3 and out["attempt"] == 1 and out["end"] >= out["start"]
    assert out["signals"] == [] and out["argv"][0] == PY


def test_the_wrapper_forwards_a_signal_and_ends_by_it(tmp_path):
    argv = wrap([PY, "-c", "import time; time.sleep(30)"], tmp_path, "job-b-1", 1)
    proc = subprocess.Popen(argv)
    wait_for(lambda: (read_outcome(tmp_path, "job-b-1") or {}).get("pid"), what="start record")
    proc.send_signal(signal.SIGTERM)  # to the wrapper only: it must reach the command
    assert proc.wait(timeout=20) == -signal.SIGTERM
    out = read_outcome(tmp_path, "job-b-1")
    assert out["exit_code"] == -signal.SIGTERM and out["signals"] == [signal.SIGTERM]


def test_a_command_that_cannot_start_has_exit_code_127_and_the_reason(tmp_path):
    argv = wrap(["/nonexistent/md-engine"], tmp_path, "job-c-1", 1)
    assert subprocess.run(argv, timeout=20, capture_output=True).returncode == 127
    out = read_outcome(tmp_path, "job-c-1")
    assert out["exit_code"] == 127 and "cannot start" in out["error"]


# ---- a finished job the scheduler forgot -------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    import numpy as np
    from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
    from mummi_ml.patch import PatchBatch

    state, backend, prefix, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jc = JobsConfig(backend=backend, name_prefix=prefix, poll_interval_s=0.1, command={cmd!r})
    em = JobEmitter(make_backend(jc, state), jc, state)
    em.recover()
    if point == "before_job_id":  # the job reaches the backend, its id never the journal
        append = em.journal.append
        def crash(event):
            if event["event"] == "submitted":
                os.kill(os.getpid(), signal.SIGKILL)
            append(event)
        em.journal.append = crash
    x = np.random.default_rng(7).random((1, 37, 37, 14), dtype=np.float32)
    em.emit(PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([7], np.uint64)), 0.0, "v")
    os.kill(os.getpid(), signal.SIGKILL)  # the service dies before it sees the job end
    """
)


def emit_then_kill_9(state: Path, backend: str, prefix: str, point: str) -> None:
    script = CHILD.format(repo=str(REPO), cmd=RECORD_RUN)
    proc = subprocess.run([PY, "-c", script, str(state), backend, prefix, point], timeout=60)
    assert proc.returncode == -signal.SIGKILL


def forget(backend: str, state: Path, name: str, flux_instance=None) -> None:
    """Make the backend forget the finished job ``name``, the way each backend really does."""
    if backend == "local":  # the local record is gone (a wiped state dir on a new node)
        subprocess.run(["rm", "-rf", str(state / "local" / name)], check=True)
    elif backend == "flux":  # flux job purge: inactive jobs leave the instance
        flux_instance.run("job", "purge", "--force", "--num-limit=0")
        listed = flux_instance.run("jobs", "-a", "-n", "-o", "{name}")
        assert name not in listed.stdout
    else:  # slurm: an id the controller no longer knows (MinJobAge without accounting)
        journal = state / "jobs.journal"
        events = [json.loads(line) for line in journal.read_text().splitlines()]
        for ev in events:
            if ev["event"] == "submitted":
                ev["job_id"] = str(int(ev["job_id"]) + 50_000_000)
        journal.write_text("".join(json.dumps(ev) + "\n" for ev in events))


@pytest.mark.parametrize("point", ["after_job_id", "before_job_id"])
def test_a_finished_job_the_backend_forgot_is_completed_from_its_outcome_not_rerun(
    tmp_path, backend_name, point, request
):
    if backend_name == "slurm" and point == "before_job_id":
        pytest.skip("a real Slurm keeps a finished job's name for MinJobAge (3600 s here)")
    prefix = f"f{abs(hash(str(tmp_path))) % 10**8}-"
    emit_then_kill_9(tmp_path, backend_name, prefix, point)
    job_dir = tmp_path / "jobs" / "7"
    found = wait_for(lambda: sorted(job_dir.glob("*.outcome.json")), what="an outcome file")
    name = found[0].name[: -len(".outcome.json")]
    wait_for(lambda: read_outcome(job_dir, name)["end"] is not None, what="the job's end")
    flux = request.getfixturevalue("flux_instance") if backend_name == "flux" else None
    forget(backend_name, tmp_path, name, flux)

    em = make_emitter(tmp_path, backend_name, name_prefix=prefix)  # recover() settles it
    assert em.counts()["completed"] == 1, em.jobs()
    assert em.records[7].attempt == 1
    [ended] = em.poll()
    assert ended["state"] == "completed" and ended["attempts"] == 1
    em.wait(5)
    assert runs(em, 7) == 1


# ---- interrupted is not cancelled ------------------------------------------------------------


def kill_from_outside(backend: str, em: JobEmitter, pid: int, flux_instance=None) -> None:
    """End the running job the way a batch link's end or a user's cancel does (not the emitter)."""
    rec = em.records[pid]
    if backend == "local":  # Slurm's SIGTERM reaches every process of the step: all of them
        out = read_outcome(em.job_dir(pid), rec.name)
        runner = json.loads((em.state_dir / "local" / rec.name / "started.json").read_text())
        for p in (runner["pid"], out["wrapper_pid"], out["pid"]):
            os.kill(p, signal.SIGTERM)
    elif backend == "slurm":
        subprocess.run(["scancel", rec.job_id], check=True, timeout=30)
    else:
        flux_instance.run("cancel", rec.job_id)


def test_a_job_killed_from_outside_is_resubmitted_and_not_charged(tmp_path, backend_name, request):
    em = make_emitter(tmp_path, backend_name, command=RUN_ONCE_SLOW, max_retries=0)
    em.emit(make_patch(3), 0.0, "v")
    wait_for(lambda: runs(em, 3) == 1, what="the first run")
    flux = request.getfixturevalue("flux_instance") if backend_name == "flux" else None
    kill_from_outside(backend_name, em, 3, flux)
    em.wait(40)
    rec = em.records[3]
    assert rec.state == "completed", em.jobs()
    assert rec.attempt == 2 and rec.interruptions == 1  # max_retries=0: not charged
    assert runs(em, 3) == 2


def test_a_job_cancelled_through_the_emitter_stays_cancelled(tmp_path, backend_name):
    em = make_emitter(tmp_path, backend_name, command=RUN_ONCE_SLOW, max_retries=2)
    em.emit(make_patch(4), 0.0, "v")
    wait_for(lambda: runs(em, 4) == 1, what="the first run")
    assert em.cancel(4)
    em.wait(40)
    assert em.records[4].state == "cancelled" and em.records[4].attempt == 1
    em.close()
    again = make_emitter(tmp_path, backend_name)  # a restart does not resubmit it either
    again.wait(5)
    assert again.records[4].state == "cancelled" and runs(again, 4) == 1


def test_a_job_interrupted_while_no_service_ran_is_resubmitted_on_restart(tmp_path):
    em = make_emitter(tmp_path, "local", command=RUN_ONCE_SLOW, max_retries=0)
    em.emit(make_patch(5), 0.0, "v")
    wait_for(lambda: runs(em, 5) == 1, what="the first run")
    em.close()  # the service stops; then the link's end kills the job
    kill_from_outside("local", em, 5)
    name = em.records[5].name
    wait_for(lambda: (read_outcome(em.job_dir(5), name) or {}).get("end"), what="its end")
    again = make_emitter(tmp_path, "local", command=RUN_ONCE_SLOW, max_retries=0)
    assert again.records[5].attempt == 2 and again.records[5].active  # reconciled on recover
    again.wait(20)
    assert again.records[5].state == "completed" and runs(again, 5) == 2
