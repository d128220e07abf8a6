"""Which of the service's variables a job starts without: the service's own place in an MPI job
(its rank, size, PMI descriptor, PMIx server), never a site's settings that share a prefix with
them; and, for ``sbatch``, the service's own Slurm job and step."""

from __future__ import annotations

import pytest

from mummi_ml.backends.jobenv import job_environment, sbatch_environment

#: set per process by the launchers (the MPICH Hydra, ``srun --mpi=pmi2`` and ``flux run`` ones
#: as printed by ``env`` under each here; PMIx, Open MPI, Cray PMI and jsrun as documented)
PER_PROCESS = {
    "hydra": {"PMI_RANK": "0", "PMI_SIZE": "2", "PMI_FD": "9", "PMI_HOSTNAME": "vm",
              "MPI_LOCALRANKID": "0", "MPI_LOCALNRANKS": "2", "HYDI_CONTROL_FD": "7"},
    "hydra-port": {"PMI_PORT": "vm:40000", "PMI_ID": "0", "PMI_SPAWNED": "1"},
    "slurm-pmi2": {"PMI_FD": "11", "PMI_JOBID": "530.0", "PMI_RANK": "0", "PMI_SIZE": "1",
                   "SLURM_PROCID": "0", "SLURM_LOCALID": "0"},
    "flux": {"PMI_FD": "18", "PMI_RANK": "0", "PMI_SIZE": "1", "FLUX_TASK_RANK": "0",
             "FLUX_TASK_LOCAL_ID": "0"},
    "cray-pmi": {"PMI_LOCAL_RANK": "0", "PMI_LOCAL_SIZE": "4", "PMI_APPNUM": "0"},
    "pmix": {"PMIX_RANK": "0", "PMIX_NAMESPACE": "slurm.pmix.530.0", "PMIX_HOSTNAME": "vm",
             "PMIX_SERVER_URI41": "pmix-server.1;tcp4://127.0.0.1:5000",
             "PMIX_SERVER_URI21": "pmix-server.1;tcp4://127.0.0.1:5000",
             "PMIX_SERVER_TMPDIR": "/var/spool/slurmd/pmix.530.0", "PMIX_VERSION": "4.2.2",
             "PMIX_SECURITY_MODE": "munge,native", "PMIX_GDS_MODULE": "ds21,ds12,hash",
             "PMIX_PTL_MODULE": "tcp,usock", "PMIX_BFROP_BUFFER_TYPE": "PMIX_BFROP_BUFFER_NON_DESC",
             "PMIX_DSTORE_21_BASE_PATH": "/var/spool/slurmd/pmix.530.0/pmix_dstor_ds21_1"},
    "open-mpi": {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2",
                 "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_UNIVERSE_SIZE": "2",
                 "OMPI_MCA_ess_base_jobid": "123", "OMPI_MCA_ess_base_vpid": "0",
                 "OMPI_MCA_orte_hnp_uri": "123.0;tcp://10.0.0.1:4000"},
    "jsrun": {"JSM_NAMESPACE_RANK": "0", "JSM_NAMESPACE_SIZE": "2"},
}

#: a site's settings and the allocation's variables: every job gets them as the service has them
SITE_SETTINGS = {
    "PMIX_MCA_gds": "hash", "PMIX_MCA_psec": "native", "OMPI_MCA_btl": "^openib",
    "OMPI_MCA_pml": "ucx", "PMI_MMAP_SYNC_WAIT_TIME": "600", "PMI_NO_FORK": "1",
    "PMI_NO_PREINITIALIZE": "1", "PMI_DEBUG": "1", "MPIR_CVAR_CH4_OFI_ENABLE_TAGGED": "1",
    "SLURM_JOB_ID": "530", "FLUX_URI": "local:///tmp/flux/local-0", "PATH": "/usr/bin",
}


@pytest.mark.parametrize("launcher", sorted(PER_PROCESS))
def test_a_job_starts_without_the_services_place_in_its_mpi_job(launcher):
    env = {**PER_PROCESS[launcher], "HOME": "/root"}
    assert job_environment(env) == {"HOME": "/root"}


@pytest.mark.parametrize("name", sorted(SITE_SETTINGS))
def test_a_job_keeps_the_sites_settings_and_the_allocations_variables(name):
    env = {**PER_PROCESS["hydra"], name: SITE_SETTINGS[name]}
    assert job_environment(env) == {name: SITE_SETTINGS[name]}


def test_sbatch_gets_no_slurm_variable_of_the_services_job_or_step():
    step = {"SLURM_JOB_ID": "530", "SLURM_NTASKS": "7", "SLURM_MEM_PER_CPU": "100",
            "SLURM_CPU_BIND": "quiet,mask_cpu:0x1", "SLURM_STEP_ID": "0",
            "SLURM_TRES_PER_TASK": "cpu:2", "SRUN_DEBUG": "3"}
    assert sbatch_environment({**step, "HOME": "/root"}) == {"HOME": "/root"}


def test_sbatch_keeps_where_the_slurm_controller_is_and_the_job_environment():
    kept = {"SLURM_CONF": "/etc/slurm/slurm.conf", "SLURM_CLUSTERS": "mummi-ci",
            "SBATCH_ACCOUNT": "bio", "PMIX_MCA_gds": "hash"}
    assert sbatch_environment({**kept, "PMI_RANK": "0"}) == kept
