"""Launcher environment detection (one test per launcher) and the rendezvous address."""

from __future__ import annotations

import pytest

from mummi_ml.parallel import LaunchError, LaunchInfo, detect_launch, rendezvous_address


def test_no_launcher_is_a_single_process():
    assert detect_launch({}) == LaunchInfo("single", 0, 1, 0, 1)


def test_mpich_hydra_mpiexec():
    env = {"PMI_RANK": "3", "PMI_SIZE": "8", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"}
    assert detect_launch(env) == LaunchInfo("mpich", 3, 8, 1, 2)


def test_openmpi_mpirun():
    env = {
        "OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "6",
        "OMPI_COMM_WORLD_LOCAL_RANK": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "3",
        "PMIX_RANK": "5",
    }
    assert detect_launch(env) == LaunchInfo("openmpi", 5, 6, 2, 3)


def test_slurm_srun():
    env = {
        "SLURM_PROCID": "7", "SLURM_NTASKS": "16", "SLURM_LOCALID": "3",
        "SLURM_STEP_ID": "0", "SLURM_STEP_TASKS_PER_NODE": "4(x4)",
    }
    assert detect_launch(env) == LaunchInfo("slurm", 7, 16, 3, 4)


def test_slurm_batch_script_itself_is_not_a_parallel_task():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_STEP_ID": "batch"}
    assert detect_launch(env).launcher == "single"


def test_lsf_jsrun():
    env = {
        "JSM_NAMESPACE_RANK": "11", "JSM_NAMESPACE_SIZE": "12",
        "JSM_NAMESPACE_LOCAL_RANK": "5", "JSM_NAMESPACE_LOCAL_SIZE": "6",
        "OMPI_COMM_WORLD_RANK": "11", "OMPI_COMM_WORLD_SIZE": "12",
    }
    assert detect_launch(env) == LaunchInfo("jsrun", 11, 12, 5, 6)


def test_flux_run():
    env = {"FLUX_TASK_RANK": "2", "FLUX_JOB_SIZE": "4", "FLUX_TASK_LOCAL_ID": "0",
           "FLUX_JOB_NNODES": "4"}
    assert detect_launch(env) == LaunchInfo("flux", 2, 4, 0, 1)


def test_mpiexec_inside_a_slurm_batch_script_ignores_the_stale_slurm_rank():
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "0",
           "PMI_RANK": "1", "PMI_SIZE": "2"}
    info = detect_launch(env)
    assert (info.launcher, info.rank, info.size) == ("mpich", 1, 2)


def test_mpiexec_inside_a_flux_job_ignores_the_stale_flux_rank():
    env = {"FLUX_TASK_RANK": "0", "FLUX_JOB_SIZE": "1", "PMI_RANK": "3", "PMI_SIZE": "4"}
    assert detect_launch(env).rank == 3


def test_non_integer_rank_is_an_error_naming_the_variable():
    with pytest.raises(LaunchError, match="PMI_RANK"):
        detect_launch({"PMI_RANK": "zero", "PMI_SIZE": "2"})


def test_rank_outside_size_is_an_error():
    with pytest.raises(LaunchError, match="out of range"):
        detect_launch({"PMI_RANK": "2", "PMI_SIZE": "2"})


def test_rendezvous_uses_master_addr_and_port_when_given():
    info = LaunchInfo("slurm", 1, 2, 1, 2)
    env = {"MASTER_ADDR": "node17", "MASTER_PORT": "29511"}
    assert rendezvous_address(info, env) == ("node17", 29511)


def test_single_process_rendezvous_needs_no_help():
    addr, port = rendezvous_address(LaunchInfo("single", 0, 1, 0, 1), {})
    assert addr == "127.0.0.1" and 0 < port < 65536


class _OtherWorld:
    """An MPI world that disagrees with the launcher (mpi4py built against another MPI)."""

    def Get_size(self):
        return 1

    def Get_rank(self):
        return 0


def test_rendezvous_refuses_an_mpi_world_that_disagrees_with_the_launcher():
    with pytest.raises(LaunchError, match="MPI says rank 0 of 1"):
        rendezvous_address(LaunchInfo("slurm", 1, 2, 1, 2), {}, comm=_OtherWorld())
