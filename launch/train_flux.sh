#!/usr/bin/env bash
# Data-parallel training under Flux (inside an instance: flux alloc, or jobs/train_flux.sh).
# Rank/size/local rank come from FLUX_TASK_RANK / FLUX_JOB_SIZE / FLUX_TASK_LOCAL_ID, the rendezvous
# from rank 0 over MPI (mpi4py, via Flux's PMI) or MASTER_ADDR/MASTER_PORT.
#   launch/train_flux.sh CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]
set -euo pipefail
# cores per node of this instance (not nproc: the instance may hold part of the node)
NODES=${NODES:-$(flux resource list -no '{nnodes}' 2>/dev/null || echo 1)}
CORES=${CORES:-$(( $(flux resource list -no '{ncores}' 2>/dev/null || nproc) / NODES ))}
source "$(dirname "$0")/train_common.sh"
gpu_opts=()
if [[ $GPUS_PER_NODE -gt 0 ]]; then gpu_opts=(-g 1); fi
# --signal: SIGUSR1 SIGNAL_BEFORE (default 5m) before the time limit -> checkpoint, clean exit
exec flux run -N "$NODES" -n $(( NODES * RANKS_PER_NODE )) -c "$THREADS_PER_RANK" \
    "${gpu_opts[@]}" --signal="SIGUSR1@${SIGNAL_BEFORE:-5m}" "${TRAIN_ARGV[@]}"
