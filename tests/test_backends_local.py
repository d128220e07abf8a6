"""What only the ``local`` backend must do itself: jobs outlive the service process, and a job
lost mid-submission is reported failed and can never start later. Plus the emitter under
repeated ``kill -9`` of the service at random moments: every patch ends with exactly one job
directory and its command ran exactly once."""

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

from mummi_ml.backends import JobEmitter, JobsConfig, JobState, LocalBackend
from mummi_ml.backends import local as local_module

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def wait_terminal(backend, job_id, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not (info := backend.state(job_id)).state.is_terminal:
        assert time.monotonic() < deadline, f"{job_id} still {info.state}"
        time.sleep(0.1)
    return info


def test_a_job_outlives_the_service_that_submitted_it(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    code = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from mummi_ml.backends import JobsConfig, LocalBackend
        b = LocalBackend(JobsConfig(), Path({str(tmp_path / "state")!r}))
        code = "import time; time.sleep(1.5); open('done.txt', 'w').write('yes')"
        b.submit("survivor", [sys.executable, "-c", code], Path({str(job_dir)!r}))
        os._exit(0)  # the service dies at once, without cleaning up
        """
    )
    subprocess.run([PY, "-c", code], check=True, timeout=60, cwd=REPO)
    backend = LocalBackend(JobsConfig(), tmp_path / "state")  # the restarted service
    assert backend.find("survivor").state in (JobState.PENDING, JobState.RUNNING)
    assert wait_terminal(backend, "survivor").state == JobState.COMPLETED
    assert (job_dir / "done.txt").read_text() == "yes"


def test_a_job_lost_before_launch_is_failed_and_never_runs_later(tmp_path, monkeypatch):
    monkeypatch.setattr(local_module, "LAUNCH_GRACE_S", 0.0)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    backend = LocalBackend(JobsConfig(), tmp_path / "state")
    rec = backend.records / "lost-1"
    rec.mkdir()  # the submitter crashed after making the record, before the runner ran
    spec = {"name": "lost-1", "argv": [PY, "-c", "open('ran', 'w')"], "job_dir": str(job_dir)}
    (rec / "spec.json").write_text(json.dumps(spec))
    info = backend.find("lost-1")
    assert info.state == JobState.FAILED and "lost" in info.reason
    # a runner that starts late finds the job claimed and does not run the command
    subprocess.run([PY, "-m", "mummi_ml.backends._runner", str(rec)], check=True, timeout=60)
    assert not (job_dir / "ran").exists()
    assert backend.find("lost-1").state == JobState.FAILED


def test_a_killed_runner_is_reported_failed(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    backend = LocalBackend(JobsConfig(), tmp_path / "state")
    backend.submit("victim", [PY, "-c", "import time; time.sleep(30)"], job_dir)
    deadline = time.monotonic() + 30
    while backend.state("victim").state != JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = json.loads((backend.records / "victim" / "started.json").read_text())
    os.killpg(started["pid"], signal.SIGKILL)  # runner and command, no exit record
    info = wait_terminal(backend, "victim", 30)
    assert info.state == JobState.FAILED and "runner died" in info.reason


def test_a_command_that_cannot_start_fails_with_the_reason(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    backend = LocalBackend(JobsConfig(), tmp_path / "state")
    backend.submit("nocmd", [str(tmp_path / "no-such-program")], job_dir)
    info = wait_terminal(backend, "nocmd")
    assert info.state == JobState.FAILED and info.exit_code == 127
    assert "cannot start" in info.reason


SERVICE = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from pathlib import Path
    from mummi_ml.backends import JobEmitter, JobsConfig, make_backend
    from mummi_ml.patch import PatchBatch

    state, n = Path(sys.argv[1]), int(sys.argv[2])
    cmd = ["{python}", "-c",
           "import sys, time; time.sleep(0.3);"
           "open(sys.argv[1] + '/runs.txt', 'a').write('run\\\\n')", "{job_dir}"]
    cfg = JobsConfig(command=cmd, slots=3, poll_interval_s=0.05)
    em = JobEmitter(make_backend(cfg, state), cfg, state)
    em.recover()
    rng = np.random.default_rng(0)
    for pid in range(n):  # the "selector": picks patches in order while slots are free
        while em.free_slots() <= 0:
            em.poll()
            time.sleep(0.05)
        if not em.emitted(pid):
            x = rng.random((1, 37, 37, 14), dtype=np.float32)
            em.emit(PatchBatch.from_arrays(x, np.array([[1, 0]]), ids=np.array([pid])), 1.0, "v")
    em.wait(120)
    print("DONE", em.counts())
    """
)


def test_kill_9_of_the_service_at_random_moments_never_duplicates_a_job(tmp_path):
    n = 30
    rng = np.random.default_rng(7)
    for _ in range(6):  # rounds of start, kill -9 after a random delay
        proc = subprocess.Popen([PY, "-c", SERVICE, str(tmp_path), str(n)], cwd=REPO)
        time.sleep(float(rng.uniform(0.3, 1.5)))
        proc.kill()
        proc.wait(30)
    done = subprocess.run(
        [PY, "-c", SERVICE, str(tmp_path), str(n)],
        cwd=REPO, capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    dirs = sorted(int(p.name) for p in (tmp_path / "jobs").iterdir())
    assert dirs == list(range(n))  # one job directory per patch, no half-built leftovers
    for pid in range(n):
        runs = (tmp_path / "jobs" / str(pid) / "runs.txt").read_text().split()
        assert runs == ["run"], f"patch {pid} ran {len(runs)} times"
    cfg = JobsConfig(slots=3)
    em = JobEmitter(LocalBackend(cfg, tmp_path), cfg, tmp_path)
    em.recover()
    assert em.counts()["completed"] == n


def zombie_children() -> list[int]:
    """Pids of this process's children that ended but were not waited for."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            out.append(int(stat.parent.name))
    return out


def test_finished_runners_are_reaped(tmp_path):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    backend = LocalBackend(JobsConfig(), tmp_path / "state")
    for i in range(3):
        backend.submit(f"reap-{i}", [PY, "-c", "pass"], job_dir)
    for i in range(3):
        wait_terminal(backend, f"reap-{i}")
    time.sleep(0.5)  # the runners exit just after writing exit.json
    backend.states(["reap-0"])  # any query collects them
    assert zombie_children() == []


@pytest.mark.mpi
def test_a_service_under_mpiexec_submits_jobs_that_are_mpi_programs_of_their_own(tmp_path,
                                                                                  run_mpi):
    """Rank 0 of a real ``mpiexec -n 2`` program submits a job of 1 task and one of 2 tasks:
    each job sees its own COMM_WORLD (1 and 2 ranks), not the service's."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mpi4py import MPI
        from mummi_ml.backends import JobsConfig, make_backend
        if MPI.COMM_WORLD.rank == 0:
            b = make_backend(JobsConfig(), Path({str(tmp_path)!r}) / "state")
            code = ("import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; "
                    "sys.stdout.write(f'rank {{c.rank}} of {{c.size}}\\\\n')")
            ids = [b.submit(f"j{{n}}", [sys.executable, "-c", code], Path({str(tmp_path)!r}),
                            tasks=n) for n in (1, 2)]
            deadline = time.monotonic() + 60
            while not all(b.state(j).state.is_terminal for j in ids):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            print([b.state(j).state.value for j in ids])
        MPI.COMM_WORLD.Barrier()
    """)
    proc = run_mpi(2, ["-c", code], timeout=120)
    assert "['completed', 'completed']" in proc.stdout, (tmp_path / "j1.err").read_text()
    assert (tmp_path / "j1.out").read_text() == "rank 0 of 1\n"
    assert sorted((tmp_path / "j2.out").read_text().splitlines()) == ["rank 0 of 2",
                                                                      "rank 1 of 2"]


def test_a_job_of_two_tasks_runs_on_this_machine_when_the_service_runs_in_a_slurm_step(
        tmp_path, request):
    """A service started by ``srun`` (it holds the step's CPUs) submits a local job of 2 tasks:
    ``mpiexec`` starts both ranks here itself (``HYDRA_LAUNCHER=fork``), it does not ask Slurm
    for a step of its own (which would wait for ever for the CPUs the service holds)."""
    require_backend(request, "slurm")
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from mummi_ml.backends import JobsConfig, LocalBackend
        b = LocalBackend(JobsConfig(), Path({str(tmp_path / "state")!r}))
        code = ("import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; "
                "sys.stdout.write(f'rank {{c.rank}} of {{c.size}}\\\\n')")
        job = b.submit("ranks", [sys.executable, "-c", code], Path({str(tmp_path)!r}), tasks=2)
        while not (info := b.state(job)).state.is_terminal:
            time.sleep(0.1)
        print(info.state.value)
    """)
    name = f"mm-localstep{os.getpid()}"
    try:
        proc = subprocess.run(
            ["srun", "-n1", "-c2", "--time=2", f"--job-name={name}", PY, "-c", code],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        err = (tmp_path / "ranks.err").read_text()
        pytest.fail(f"the 2-task job did not end within 60 s: {err}")
    finally:
        subprocess.run(["scancel", "--name", name], capture_output=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "completed", proc.stderr
    assert sorted((tmp_path / "ranks.out").read_text().splitlines()) == ["rank 0 of 2",
                                                                        "rank 1 of 2"]
