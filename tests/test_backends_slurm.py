"""What only the Slurm backend does: state names, the options that reach ``sbatch``, ids that
Slurm no longer knows. The cluster tests need a real Slurm (``bash .ci/setup-slurm.sh``)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mummi_ml.backends import BACKENDS, JobsConfig, JobState, SlurmBackend
from mummi_ml.backends.slurm import slurm_state

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    "text, state",
    [
        ("PENDING", JobState.PENDING),
        ("CONFIGURING", JobState.PENDING),
        ("REQUEUED", JobState.PENDING),
        ("RUNNING", JobState.RUNNING),
        ("COMPLETING", JobState.RUNNING),
        ("COMPLETED", JobState.COMPLETED),
        ("CANCELLED by 0", JobState.CANCELLED),
        ("CANCELLED+", JobState.CANCELLED),
        ("FAILED", JobState.FAILED),
        ("TIMEOUT", JobState.FAILED),
        ("NODE_FAIL", JobState.FAILED),
        ("OUT_OF_MEMORY", JobState.FAILED),
    ],
)
def test_slurm_state_names_map_to_job_states(text, state):
    assert slurm_state(text) == state


def test_every_config_choice_has_a_backend():
    choices = JobsConfig.model_fields["backend"].annotation.__args__
    assert set(choices) == set(BACKENDS)


@pytest.fixture
def slurm(tmp_path):
    reason = SlurmBackend.unavailable_reason()
    if reason:
        pytest.skip(f"slurm backend unavailable: {reason}")
    return tmp_path


def scontrol_field(job_id: str, field: str) -> str:
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30
    ).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv).get(field, "")


def test_slurm_options_reach_sbatch(slurm):
    cfg = JobsConfig(
        backend="slurm",
        slurm={"cpus_per_task": 2, "time_limit": "00:05:00", "extra_args": ["--comment=mm-t"]},
    )
    backend = SlurmBackend(cfg, slurm / "state")
    job_dir = slurm / "job"
    job_dir.mkdir()
    job_id = backend.submit(
        f"opts{time.time_ns() % 10**9}", [sys.executable, "-c", "pass"], job_dir
    )
    assert scontrol_field(job_id, "NumCPUs") == "2"
    assert scontrol_field(job_id, "TimeLimit") == "00:05:00"
    assert scontrol_field(job_id, "Comment") == "mm-t"
    assert scontrol_field(job_id, "WorkDir") == str(job_dir)


def test_an_id_slurm_never_had_is_unknown(slurm):
    backend = SlurmBackend(JobsConfig(backend="slurm"), slurm / "state")
    assert backend.state("99999999").state == JobState.UNKNOWN
    got = backend.states(["99999998", "99999999"])
    assert {info.state for info in got.values()} == {JobState.UNKNOWN}


#: what a service running in an ``srun`` step carries that its jobs' own ``srun`` would read as
#: options (the first two together are an error of srun's; the node has 1 MB of memory)
SUBMITTER_STEP = {"SLURM_MEM_PER_CPU": "100", "SLURM_MEM_PER_NODE": "100", "SLURM_NTASKS": "7",
                  "SLURM_DISTRIBUTION": "cyclic", "SLURM_STEP_ID": "3", "SRUN_DEBUG": "3"}


def wait_terminal(backend: SlurmBackend, job_id: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while not (info := backend.state(job_id)).state.is_terminal:
        assert time.monotonic() < deadline, f"{job_id} still {info.state}"
        time.sleep(0.3)
    return info


def test_a_job_of_two_tasks_runs_two_ranks_whatever_slurm_step_the_submitter_is_in(
        slurm, monkeypatch):
    for key, value in SUBMITTER_STEP.items():
        monkeypatch.setenv(key, value)
    backend = SlurmBackend(JobsConfig(backend="slurm"), slurm / "state")
    name = f"polluted{time.time_ns() % 10**9}"
    code = ("import sys; from mpi4py import MPI; c = MPI.COMM_WORLD; "
            "sys.stdout.write(f'rank {c.rank} of {c.size}\\n')")
    job_id = backend.submit(name, [sys.executable, "-c", code], slurm, tasks=2)
    info = wait_terminal(backend, job_id)
    assert info.state == JobState.COMPLETED, (slurm / f"{name}.err").read_text()[-2000:]
    assert sorted((slurm / f"{name}.out").read_text().splitlines()) == ["rank 0 of 2",
                                                                       "rank 1 of 2"]


def test_a_job_does_not_inherit_the_slurm_variables_of_the_submitters_step(slurm, monkeypatch):
    for key, value in SUBMITTER_STEP.items():
        monkeypatch.setenv(key, value)
    backend = SlurmBackend(JobsConfig(backend="slurm"), slurm / "state")
    name = f"stepenv{time.time_ns() % 10**9}"
    job_id = backend.submit(name, ["env"], slurm)
    assert wait_terminal(backend, job_id).state == JobState.COMPLETED
    job_env = dict(line.split("=", 1) for line in (slurm / f"{name}.out").read_text().splitlines()
                   if "=" in line)
    assert job_env["SLURM_JOB_ID"] == job_id  # the job's own, from its allocation
    assert job_env.get("SLURM_NTASKS") != "7"
    inherited = {k: v for k, v in SUBMITTER_STEP.items() if job_env.get(k) == v}
    assert inherited == {}
