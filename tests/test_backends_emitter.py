"""The job emitter: job directories, argv templates, slots, retries, and exactly-once submission
across crashes (real crashes: a child process ``os._exit``s at a chosen point of ``emit``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import require_backend

from mummi_ml.backends import (
    EmitterError,
    JobDirError,
    JobDirs,
    JobEmitter,
    JobsConfig,
    JobWaitTimeout,
    make_backend,
)
from mummi_ml.backends.journal import Journal
from mummi_ml.patch import PatchBatch, read_patches

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# a fast stand-in MD command: appends one line per run to runs.txt in the job dir
RECORD_RUN = [
    "{python}",
    "-c",
    "import sys; open(sys.argv[1] + '/runs.txt', 'a').write(sys.argv[2] + '\\n')",
    "{job_dir}",
    "{patch_id}",
]


def make_patch(pid: int, n_ras: int = 1) -> PatchBatch:
    rng = np.random.default_rng(pid)
    x = rng.random((1, 37, 37, 14), dtype=np.float32)
    return PatchBatch.from_arrays(x, np.array([[n_ras, 0]]), ids=np.array([pid], np.uint64))


def make_emitter(state: Path, backend: str = "local", **cfg) -> JobEmitter:
    cfg.setdefault("command", RECORD_RUN)
    cfg.setdefault("poll_interval_s", 0.1)
    cfg.setdefault("name_prefix", f"e{abs(hash(str(state))) % 10**8}-")  # unique on Slurm
    jobs_cfg = JobsConfig(backend=backend, **cfg)
    emitter = JobEmitter(make_backend(jobs_cfg, state), jobs_cfg, state)
    emitter.recover()
    return emitter


def runs(emitter: JobEmitter, pid: int) -> list[str]:
    path = emitter.job_dir(pid) / "runs.txt"
    return path.read_text().split() if path.exists() else []


@pytest.fixture(params=["local", "slurm", "flux"])
def backend_name(request):
    require_backend(request, request.param)
    return request.param


# ---- job directories and commands ------------------------------------------------------------


def test_emit_creates_job_dir_with_patch_and_job_json(tmp_path):
    em = make_emitter(tmp_path)
    patch = make_patch(42, n_ras=1)
    name = em.emit(patch, novelty=1.5, model_version="v3")
    job_dir = tmp_path / "jobs" / "42"
    meta = json.loads((job_dir / "job.json").read_text())
    assert meta["patch_id"] == 42 and meta["class"] == 1 and meta["novelty"] == 1.5
    assert meta["model_version"] == "v3" and meta["attempt"] == 1 and "time" in meta
    np.testing.assert_array_equal(read_patches(job_dir / "patch.h5").x, patch.x)
    assert name == em.job_name(42, 1) and name.startswith(em.cfg.name_prefix)
    assert name.endswith("-42-1")
    em.wait(60)


def test_job_json_carries_the_producers_patch_name(tmp_path):
    em = make_emitter(tmp_path)
    patch = make_patch(43, n_ras=1)
    patch.names = np.array(["mu-24-ras_000000000043"], dtype=object)
    em.emit(patch, novelty=1.0, model_version="v3")
    meta = json.loads((tmp_path / "jobs" / "43" / "job.json").read_text())
    assert meta["name"] == "mu-24-ras_000000000043"
    em.wait(60)


def test_command_placeholders_are_filled_per_element(tmp_path):
    code = "import json, sys; json.dump(sys.argv[1:], open('argv.json', 'w'))"
    cmd = ["{python}", "-c", code, "{job_dir}", "--in={patch_file}", "id {patch_id}", "{{lit}}"]
    em = make_emitter(tmp_path, command=cmd)
    em.emit(make_patch(7), 0.0, "v")
    em.wait(60)
    job_dir = tmp_path / "jobs" / "7"
    argv = json.loads((job_dir / "argv.json").read_text())
    assert argv == [str(job_dir), f"--in={job_dir / 'patch.h5'}", "id 7", "{lit}"]


def test_emitting_a_patch_twice_returns_its_job_and_submits_nothing_new(tmp_path):
    em = make_emitter(tmp_path)
    first = em.emit(make_patch(5), 1.0, "v")
    again = em.emit(make_patch(5), 2.0, "v")
    assert again == first
    em.wait(60)
    assert runs(em, 5) == ["5"]
    assert json.loads((tmp_path / "jobs" / "5" / "job.json").read_text())["novelty"] == 1.0


def test_emit_needs_exactly_one_patch(tmp_path):
    em = make_emitter(tmp_path)
    two = PatchBatch.concat([make_patch(1), make_patch(2)])
    with pytest.raises(EmitterError, match="1 patch, got 2"):
        em.emit(two, 0.0, "v")


def test_emit_without_a_free_slot_raises(tmp_path):
    em = make_emitter(tmp_path, slots=1, command=["{python}", "-c", "import time; time.sleep(1)"])
    em.emit(make_patch(1), 0.0, "v")
    assert em.free_slots() == 0
    with pytest.raises(EmitterError, match="no free MD slot"):
        em.emit(make_patch(2), 0.0, "v")
    em.wait(60)
    assert em.free_slots() == 1


def test_counts_and_poll_report_finished_jobs(tmp_path):
    em = make_emitter(tmp_path, slots=3)
    for pid in (1, 2, 3):
        em.emit(make_patch(pid), 0.0, "v")
    assert em.counts()["completed"] == 0 and em.free_slots() == 0
    em.wait(60)
    done = em.poll()
    assert sorted(d["patch_id"] for d in done) == [1, 2, 3]
    assert {d["state"] for d in done} == {"completed"} and {d["attempts"] for d in done} == {1}
    assert em.counts()["completed"] == 3 and em.free_slots() == 3
    assert em.poll() == []  # each end is reported once


def test_wait_times_out_with_active_jobs(tmp_path):
    em = make_emitter(tmp_path, command=["{python}", "-c", "import time; time.sleep(30)"])
    name = em.emit(make_patch(1), 0.0, "v")
    with pytest.raises(JobWaitTimeout, match="still active"):
        em.wait(0.5)
    assert em.cancel(1)  # only the emitter's own cancel ends a job as cancelled
    em.wait(30)
    assert em.counts()["cancelled"] == 1 and em.records[1].name == name


@pytest.mark.parametrize("pid", [-1, 2**64, "../x", "1/../../etc", 1.5, True])
def test_job_dir_rejects_ids_that_are_not_uint64(tmp_path, pid):
    em = make_emitter(tmp_path)
    with pytest.raises(JobDirError, match="patch_id"):
        em.job_dir(pid)


def test_job_dir_stays_under_jobs_root(tmp_path):
    em = make_emitter(tmp_path, jobs_root="md/runs")
    assert em.job_dir(2**64 - 1) == (tmp_path / "md" / "runs" / str(2**64 - 1)).absolute()


# ---- retries -----------------------------------------------------------------------------------


def test_a_failing_job_is_retried_then_recorded_failed(tmp_path):
    cmd = RECORD_RUN + ["--fail"]
    cmd[2] = RECORD_RUN[2] + "; raise SystemExit(4)"
    em = make_emitter(tmp_path, command=cmd, max_retries=2)
    em.emit(make_patch(9), 0.0, "v")
    em.wait(60)
    (done,) = em.poll()
    assert done["state"] == "failed" and done["attempts"] == 3 and done["exit_code"] == 4
    assert runs(em, 9) == ["9", "9", "9"]
    assert json.loads((tmp_path / "jobs" / "9" / "job.json").read_text())["attempt"] == 3
    assert em.counts()["failed"] == 1


def test_a_flaky_job_completes_on_its_retry(tmp_path):
    code = (
        "import os, sys; f = os.path.join(sys.argv[1], 'tried');"
        "ok = os.path.exists(f); open(f, 'a').close(); raise SystemExit(0 if ok else 1)"
    )
    em = make_emitter(tmp_path, command=["{python}", "-c", code, "{job_dir}"], max_retries=1)
    em.emit(make_patch(3), 0.0, "v")
    em.wait(60)
    (done,) = em.poll()
    assert done["state"] == "completed" and done["attempts"] == 2


# ---- recovery and exactly-once -------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from pathlib import Path
    from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
    from mummi_ml.patch import PatchBatch

    state, backend, prefix, point = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    cmd = sys.argv[5:]
    cfg = JobsConfig(backend=backend, command=cmd, name_prefix=prefix)
    em = JobEmitter(make_backend(cfg, state), cfg, state)
    em.recover()

    def crash(*a, **k):
        os._exit(9)

    if point == "before-intent":          # job dir made, intent never written
        em.journal.append = crash
    elif point == "before-submit":        # intent written, backend never asked
        em.backend.submit = crash
    elif point == "before-job-id":        # backend has the job, journal has no job id
        append = em.journal.append
        em.journal.append = lambda e: crash() if e["event"] == "submitted" else append(e)
    x = np.random.default_rng(0).random((1, 37, 37, 14), dtype=np.float32)
    em.emit(PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([11], np.uint64)), 1.0, "v")
    os._exit(0)
    """
)


def crash_during_emit(state: Path, backend: str, prefix: str, point: str) -> None:
    proc = subprocess.run(
        [PY, "-c", CRASH_SCRIPT, str(state), backend, prefix, point, *RECORD_RUN],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 9, proc.stderr


@pytest.mark.parametrize("point", ["before-intent", "before-submit", "before-job-id"])
def test_a_crash_during_emit_leads_to_exactly_one_job_after_recover(tmp_path, backend_name, point):
    prefix = f"c{abs(hash(str(tmp_path))) % 10**8}-"
    crash_during_emit(tmp_path, backend_name, prefix, point)
    em = make_emitter(tmp_path, backend_name, name_prefix=prefix)  # recover() inside
    assert set(em.records) == {11} and em.records[11].job_id is not None
    em.wait(60)
    assert runs(em, 11) == ["11"]  # the command ran exactly once
    assert em.counts()["completed"] == 1
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["11"]
    again = make_emitter(tmp_path, backend_name, name_prefix=prefix)  # a second restart
    assert again.counts()["completed"] == 1 and again.poll() == []
    assert runs(again, 11) == ["11"]


def test_the_journal_records_intent_before_job_id(tmp_path):
    em = make_emitter(tmp_path)
    name = em.emit(make_patch(4), 0.0, "v")
    events = [json.loads(line) for line in (tmp_path / "jobs.journal").read_text().splitlines()]
    assert [e["event"] for e in events] == ["intent", "submitted"]
    assert events[0]["name"] == events[1]["name"] == name and events[0]["patch_id"] == 4
    em.wait(60)


def test_recover_restores_finished_and_failed_states_without_resubmitting(tmp_path):
    em = make_emitter(tmp_path, slots=2, max_retries=0)
    em.emit(make_patch(1), 0.0, "v")
    em.wait(60)
    em.cfg.command = ["{python}", "-c", "raise SystemExit(2)"]
    em.emit(make_patch(2), 0.0, "v")
    em.wait(60)
    em.close()
    again = make_emitter(tmp_path, slots=2, max_retries=0)
    assert again.records[1].state == "completed" and again.records[2].state == "failed"
    assert again.records[2].exit_code == 2 and again.free_slots() == 2
    assert again.poll() == [] and runs(again, 1) == ["1"]


def test_a_running_job_is_followed_after_a_restart(tmp_path):
    cmd = ["{python}", "-c", "import time; time.sleep(1.5)"]
    em = make_emitter(tmp_path, command=cmd)
    name = em.emit(make_patch(8), 0.0, "v")
    del em  # the service is gone; the job keeps running
    again = make_emitter(tmp_path, command=cmd)
    assert again.records[8].name == name and again.records[8].state in ("pending", "running")
    again.wait(60)
    assert [d["state"] for d in again.poll()] == ["completed"]


def test_a_torn_last_journal_line_is_dropped(tmp_path):
    journal = Journal(tmp_path / "j")
    journal.append({"event": "intent", "name": "a-1-1", "patch_id": 1, "attempt": 1})
    journal.close()
    with open(tmp_path / "j", "ab") as f:
        f.write(b'{"event": "submitted", "na')
    assert [e["event"] for e in Journal(tmp_path / "j").replay()] == ["intent"]
    journal = Journal(tmp_path / "j")
    journal.append({"event": "submitted", "name": "a-1-1", "job_id": "a-1-1"})
    assert [e["event"] for e in Journal(tmp_path / "j").replay()] == ["intent", "submitted"]


def test_a_job_dir_is_never_created_twice(tmp_path):
    dirs = JobDirs(tmp_path / "jobs")
    dirs.create(make_patch(3), {"attempt": 1})
    with pytest.raises(JobDirError, match="exists already"):
        dirs.create(make_patch(3), {"attempt": 1})
    assert dirs.patch_ids() == [3]


def test_half_built_job_dirs_are_removed_on_recover(tmp_path):
    (tmp_path / "jobs" / ".tmp-5-abcd").mkdir(parents=True)
    em = make_emitter(tmp_path)
    assert list((tmp_path / "jobs").iterdir()) == [] and em.records == {}


def test_two_campaigns_never_share_a_job_name(tmp_path):
    a = make_emitter(tmp_path / "a", name_prefix="same-")
    b = make_emitter(tmp_path / "b", name_prefix="same-")
    assert a.job_name(1, 1) != b.job_name(1, 1)
    assert a.job_name(1, 1) == make_emitter(tmp_path / "a", name_prefix="same-").job_name(1, 1)


def test_a_shared_jobs_root_never_runs_another_campaigns_job(tmp_path):
    shared = tmp_path / "shared_jobs"
    a = make_emitter(tmp_path / "a", jobs_root=str(shared))
    a.emit(make_patch(7), novelty=1.0, model_version="v")
    a.wait(timeout_s=60)
    b = make_emitter(tmp_path / "b", jobs_root=str(shared))  # recover sees patch 7's dir
    assert not b.emitted(7)
    with pytest.raises(EmitterError, match="belongs to campaign"):
        b.emit(make_patch(7), novelty=1.0, model_version="v")
    assert runs(a, 7) == ["7"]
