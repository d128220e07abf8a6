#!/usr/bin/env bash
# Data-parallel training under mpiexec / mpirun (MPICH Hydra: PMI_RANK/PMI_SIZE; Open MPI:
# OMPI_COMM_WORLD_*). On a workstation or laptop: RANKS (default 2) ranks on this machine, gloo
# on CPUs or one GPU per rank. Set HOSTFILE for several nodes (passed as -f / --hostfile).
#   launch/train_mpiexec.sh CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]
set -euo pipefail
RANKS=${RANKS:-2}
RANKS_PER_NODE=${RANKS_PER_NODE:-$RANKS}
source "$(dirname "$0")/train_common.sh"
MPIEXEC=${MPIEXEC:-$(command -v mpiexec || echo mpiexec)}
host_opts=()
if [[ -n ${HOSTFILE:-} ]]; then
    if "$MPIEXEC" --version 2>&1 | grep -qi "open mpi"; then host_opts=(--hostfile "$HOSTFILE")
    else host_opts=(-f "$HOSTFILE"); fi
fi
exec "$MPIEXEC" -n "$RANKS" "${host_opts[@]}" "${TRAIN_ARGV[@]}"
