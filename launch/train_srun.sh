#!/usr/bin/env bash
# Data-parallel training under Slurm (run inside an allocation: salloc, or jobs/train_slurm.sbatch).
# One rank per GPU (NCCL) or RANKS_PER_NODE ranks per CPU node (gloo); rank, size and local rank
# come from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, the rendezvous from rank 0 over MPI
# (mpi4py) or MASTER_ADDR/MASTER_PORT.
#   launch/train_srun.sh CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]
set -euo pipefail
source "$(dirname "$0")/train_common.sh"
source "$(dirname "$0")/slurm_mpi.sh"   # SLURM_MPI_TYPE: pmi2 for MPICH, pmix for Open MPI
gpu_opts=()
if [[ $GPUS_PER_NODE -gt 0 ]]; then gpu_opts=(--gpus-per-task=1); fi
# SLURM_MPI_TYPE (slurm_mpi.sh) lets mpi4py join one MPI world for the rendezvous broadcast
exec srun --nodes="$NODES" --ntasks-per-node="$RANKS_PER_NODE" \
    --cpus-per-task="$THREADS_PER_RANK" "${gpu_opts[@]}" "${TRAIN_ARGV[@]}"
