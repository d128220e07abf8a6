"""One contract every job backend fulfils, run over local, Slurm, Flux and handoff.

Slurm runs against a real cluster (``bash .ci/setup-slurm.sh`` makes a single-node one); Flux
against a real instance that the ``flux_instance`` fixture starts (``flux start``, flux-core from
``bash .ci/build-flux.sh``). A backend that is not installed or not reachable here is skipped
with the reason. The handoff backend hands jobs to a workflow manager
instead of running them: here a real consumer (``tests/handoff_runner.py``, the public consumer
API) runs each handed-over command and acknowledges it, so "runs" means "handed over, launched
by the consumer, acknowledged with its outcome".
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import require_backend

from mummi_ml.backends import (
    BACKENDS,
    BackendError,
    JobBackend,
    JobsConfig,
    JobState,
    backend_class,
    make_backend,
)

pytestmark = pytest.mark.timeout(120)

PY = sys.executable

#: one line per rank: "rank R of SIZE" (one write each, so lines of two ranks never interleave)
MPI_RANKS = ("import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; "
             "sys.stdout.write(f'rank {c.rank} of {c.size}\\n')")


def wait_for(backend: JobBackend, job_id: str, states, timeout_s: float = 60.0):
    """Poll until the job is in one of ``states``; returns its JobInfo (fails on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = backend.state(job_id)
        if info.state in states:
            return info
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {info.state} after {timeout_s} s")
        time.sleep(0.2)


def wait_terminal(backend: JobBackend, job_id: str, timeout_s: float = 60.0):
    return wait_for(
        backend, job_id, (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED), timeout_s
    )


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path) -> JobBackend:
    require_backend(request, request.param)
    b = make_backend(JobsConfig(backend=request.param), tmp_path / "state")
    runner = None
    if request.param == "handoff":  # the workflow manager that launches what is handed over
        from handoff_runner import HandoffRunner

        runner = HandoffRunner(b.root).start()
    yield b
    if runner is not None:
        runner.stop()
    b.close()


@pytest.fixture
def job_dir(tmp_path) -> Path:
    d = tmp_path / "job"
    d.mkdir()
    return d


def unique(name: str) -> str:
    """Job names are global on a real scheduler: make each test's names unique."""
    return f"t{time.time_ns() % 10**12}-{name}"


def test_submitted_command_runs_in_job_dir_and_completes(backend, job_dir):
    job_id = backend.submit(unique("ok"), [PY, "-c", "open('ran.txt', 'w').write('ok')"], job_dir)
    info = wait_terminal(backend, job_id)
    assert info.state == JobState.COMPLETED
    assert info.exit_code == 0
    assert (job_dir / "ran.txt").read_text() == "ok"


def test_nonzero_exit_is_failed_with_its_exit_code(backend, job_dir):
    job_id = backend.submit(unique("bad"), [PY, "-c", "raise SystemExit(3)"], job_dir)
    info = wait_terminal(backend, job_id)
    assert info.state == JobState.FAILED
    assert info.exit_code == 3


def test_argv_elements_reach_the_command_unparsed_by_any_shell(backend, job_dir):
    tricky = ["a b; touch pwned", "$HOME", "`id`", "'\"", "*"]
    code = "import json, sys; json.dump(sys.argv[1:], open('argv.json', 'w'))"
    job_id = backend.submit(unique("argv"), [PY, "-c", code, *tricky], job_dir)
    assert wait_terminal(backend, job_id).state == JobState.COMPLETED
    assert json.loads((job_dir / "argv.json").read_text()) == tricky
    assert not (job_dir / "pwned").exists()


def test_stdout_and_stderr_go_to_files_named_after_the_job(backend, job_dir):
    name = unique("out")
    code = "import sys; print('to-out'); print('to-err', file=sys.stderr)"
    job_id = backend.submit(name, [PY, "-c", code], job_dir)
    assert wait_terminal(backend, job_id).state == JobState.COMPLETED
    assert "to-out" in (job_dir / f"{name}.out").read_text()
    assert "to-err" in (job_dir / f"{name}.err").read_text()


def test_find_returns_the_job_submitted_under_that_name(backend, job_dir):
    name = unique("find")
    job_id = backend.submit(name, [PY, "-c", "pass"], job_dir)
    info = backend.find(name)
    assert info is not None and info.job_id == job_id and info.name == name


def test_find_of_a_name_never_submitted_is_none(backend):
    assert backend.find(unique("never")) is None


def test_a_new_backend_instance_finds_and_follows_a_job(backend, job_dir, tmp_path):
    name = unique("restart")
    job_id = backend.submit(name, [PY, "-c", "import time; time.sleep(1)"], job_dir)
    again = make_backend(backend.cfg, backend.state_dir)  # as after a restart of the service
    info = again.find(name)
    assert info is not None and info.job_id == job_id
    assert wait_terminal(again, job_id).state == JobState.COMPLETED


def test_cancel_stops_a_running_job(backend, job_dir):
    job_id = backend.submit(unique("cancel"), [PY, "-c", "import time; time.sleep(60)"], job_dir)
    wait_for(backend, job_id, (JobState.RUNNING,), timeout_s=30)
    backend.cancel(job_id)
    info = wait_terminal(backend, job_id, timeout_s=30)
    assert info.state == JobState.CANCELLED


def test_states_answers_several_jobs_at_once(backend, job_dir):
    ids = [backend.submit(unique(f"many{i}"), [PY, "-c", "pass"], job_dir) for i in range(3)]
    for job_id in ids:
        wait_terminal(backend, job_id)
    got = backend.states(ids)
    assert set(got) == set(ids)
    assert all(info.state == JobState.COMPLETED for info in got.values())


def ranks_seen(out: Path) -> list[tuple[int, int]]:
    """(rank, size) of every "rank R of SIZE" line in a job's output, sorted."""
    return sorted((int(r), int(n)) for r, n in re.findall(r"rank (\d+) of (\d+)", out.read_text()))


def test_a_job_of_two_tasks_runs_as_one_mpi_program_of_two_ranks(backend, job_dir):
    name = unique("mpi2")
    job_id = backend.submit(name, [PY, "-c", MPI_RANKS], job_dir, tasks=2)
    info = wait_terminal(backend, job_id)
    assert info.state == JobState.COMPLETED, (job_dir / f"{name}.err").read_text()[-2000:]
    assert ranks_seen(job_dir / f"{name}.out") == [(0, 2), (1, 2)]


def test_a_job_without_tasks_runs_the_backends_default_task_count(backend, job_dir):
    name = unique("mpi1")
    assert backend.default_tasks == 1  # flux: jobs.flux.num_tasks, 1 by default
    job_id = backend.submit(name, [PY, "-c", MPI_RANKS], job_dir)
    assert wait_terminal(backend, job_id).state == JobState.COMPLETED
    assert ranks_seen(job_dir / f"{name}.out") == [(0, 1)]


#: what a service that is rank 0 of an MPICH (Hydra) program of 2 ranks carries in its environment
SERVICE_RANK_0_OF_2 = {"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_FD": "9", "PMI_HOSTNAME": "vm",
                       "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2", "HYDI_CONTROL_FD": "7"}


@pytest.mark.parametrize("tasks", [1, 2])
def test_a_job_does_not_inherit_the_mpi_rank_of_the_service_that_submits_it(
        backend, job_dir, monkeypatch, tasks):
    if backend.name == "handoff":
        pytest.skip("handoff: the job runs in the consumer's environment, not the service's")
    for key, value in SERVICE_RANK_0_OF_2.items():
        monkeypatch.setenv(key, value)
    name = unique(f"inherit{tasks}")
    job_id = backend.submit(name, [PY, "-c", MPI_RANKS], job_dir, tasks=tasks)
    info = wait_terminal(backend, job_id)
    assert info.state == JobState.COMPLETED, (job_dir / f"{name}.err").read_text()[-2000:]
    assert ranks_seen(job_dir / f"{name}.out") == [(r, tasks) for r in range(tasks)]


def test_cancel_stops_every_rank_of_a_job_of_two_tasks(backend, job_dir):
    code = ("import os, time; from mpi4py import MPI; "
            "open(f'rank{MPI.COMM_WORLD.rank}.pid', 'w').write(str(os.getpid())); time.sleep(60)")
    job_id = backend.submit(unique("mpicancel"), [PY, "-c", code], job_dir, tasks=2)
    deadline = time.monotonic() + 60
    pid_files = [job_dir / "rank0.pid", job_dir / "rank1.pid"]
    while not all(p.exists() and p.read_text() for p in pid_files):
        assert time.monotonic() < deadline, f"ranks never started: {backend.state(job_id)}"
        time.sleep(0.2)
    pids = [int(p.read_text()) for p in pid_files]
    backend.cancel(job_id)
    assert wait_terminal(backend, job_id, timeout_s=30).state == JobState.CANCELLED
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)


def alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (the ranks run on this machine)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.mark.slow  # one 2-rank training per backend, each rank loading torch: ~15 s each
def test_a_training_job_of_two_tasks_trains_data_parallel_on_two_ranks(backend, job_dir):
    """What the selector's retraining job relies on (``selector.retrain.tasks``)."""
    import numpy as np

    from mummi_ml.patch import PatchBatch, write_patches

    rng = np.random.default_rng(0)
    x = np.minimum(rng.gamma(2.0, 0.5, size=(48, 37, 37, 14)), 3.0).astype(np.float32)
    n_ras = rng.integers(0, 3, 48)
    y = np.stack([n_ras, np.minimum(n_ras, rng.integers(0, 2, 48))], 1).astype(np.int32)
    write_patches(job_dir / "train.h5", PatchBatch.from_arrays(x, y))
    sets = ["train.epochs=1", "train.batch_size=16", "train.num_threads=1", "train.device=cpu",
            "train.val_max_patches=16", "train.val_metric_patches=8", "model.latent_dim=3"]
    argv = [PY, "-m", "mummi_ml", "train", "--data", str(job_dir / "train.h5"),
            "--out", str(job_dir / "model"), "--no-progress"]
    for kv in sets:
        argv += ["--set", kv]
    name = unique("train2")
    job_id = backend.submit(name, argv, job_dir, tasks=2)
    info = wait_terminal(backend, job_id, timeout_s=110)
    err = (job_dir / f"{name}.err").read_text()
    assert info.state == JobState.COMPLETED, err[-3000:]
    assert "mummi-ml train: 2 rank(s)" in err
    assert json.loads((job_dir / "model" / "metric.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("tasks", [0, -1, 1.5, "2", True])
def test_tasks_must_be_a_positive_integer(backend, job_dir, tasks):
    with pytest.raises(BackendError, match="tasks"):
        backend.submit(unique("tasks"), [PY, "-c", "pass"], job_dir, tasks=tasks)


@pytest.mark.parametrize("name", ["../escape", "a b", "", "-dash", "x" * 101, "semi;colon"])
def test_bad_job_names_are_rejected(backend, job_dir, name):
    with pytest.raises(BackendError, match="job name"):
        backend.submit(name, [PY, "-c", "pass"], job_dir)


def test_argv_must_be_a_list_of_strings(backend, job_dir):
    with pytest.raises(BackendError, match="argv"):
        backend.submit(unique("str"), "echo hi", job_dir)
    with pytest.raises(BackendError, match="argv"):
        backend.submit(unique("int"), [PY, 3], job_dir)


def test_job_dir_must_exist(backend, tmp_path):
    with pytest.raises(BackendError, match="job_dir"):
        backend.submit(unique("nodir"), [PY, "-c", "pass"], tmp_path / "missing")


def test_unknown_backend_name_lists_the_valid_ones():
    with pytest.raises(BackendError, match="local, slurm, flux"):
        backend_class("pbs")
