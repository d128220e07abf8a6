#!/usr/bin/env bash
# Run the in situ selector as one Slurm job step (inside an allocation: salloc/sbatch).
#   NRANKS=8 GPUS_PER_RANK=1 launch/select_srun.sh --config configs/campaign.yaml
# srun forwards SIGTERM/SIGUSR1 to every task; --kill-on-bad-exit=0: one failing rank does not
# take the step down before the others have checkpointed.
set -euo pipefail
NRANKS=${NRANKS:-${SLURM_NTASKS:-2}}
MUMMI=${MUMMI:-mummi-ml}
source "$(dirname "$0")/slurm_mpi.sh"   # SLURM_MPI_TYPE: pmi2 for MPICH, pmix for Open MPI
GPU_OPTS=()
if [[ -n "${GPUS_PER_RANK:-}" ]]; then GPU_OPTS=(--gpus-per-task="$GPUS_PER_RANK"); fi
exec srun --ntasks="$NRANKS" --kill-on-bad-exit=0 "${GPU_OPTS[@]}" "$MUMMI" select "$@"
