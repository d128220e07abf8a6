# Shared by the srun launchers and jobs/*.sbatch (sourced, not run): sets SLURM_MPI_TYPE, the PMI
# that srun offers the tasks, when the user and the site left it unset (MpiDefault=none is common).
# Without the right one each task of an MPICH program initialises alone (MPI size 1): PyPI's MPICH
# (the `mpich` wheel) and other MPICH derivatives need pmi2, Open MPI needs pmix.
#   SLURM_MPI_TYPE=pmix ...   choose it yourself (also SRUN_MPI, the older name)
#   PYTHON                    the interpreter with mpi4py (default python3 on PATH)
if [[ -z ${SLURM_MPI_TYPE:-} && -n ${SRUN_MPI:-} ]]; then export SLURM_MPI_TYPE=$SRUN_MPI; fi
if [[ -z ${SLURM_MPI_TYPE:-} ]]; then
    _mummi_mpi_lib=$("${PYTHON:-python3}" -c 'import mpi4py
mpi4py.rc.initialize = False
from mpi4py import MPI
print(MPI.Get_library_version().splitlines()[0])' 2>/dev/null || true)
    case "$_mummi_mpi_lib" in
        *"Open MPI"*) export SLURM_MPI_TYPE=pmix ;;
        *MPICH*|*"Intel(R) MPI"*|*MVAPICH*|*CRAY*) export SLURM_MPI_TYPE=pmi2 ;;
    esac
    unset _mummi_mpi_lib
fi
