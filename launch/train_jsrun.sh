#!/usr/bin/env bash
# Data-parallel training under LSF's jsrun (Summit-class machines: 6 GPUs per node).
# One resource set per GPU: 1 task, 1 GPU, THREADS_PER_RANK cores; rank/size/local rank come from
# JSM_NAMESPACE_* (and OMPI_COMM_WORLD_*), the rendezvous from rank 0 over MPI (mpi4py).
#   launch/train_jsrun.sh CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]
set -euo pipefail
source "$(dirname "$0")/train_common.sh"
# on a batch node nvidia-smi sees no GPU: ask for them explicitly (default 6 per node)
RANKS_PER_NODE=${RANKS_PER_NODE:-6}
NODES=${NODES:-$(( $(sort -u <<<"${LSB_HOSTS:-x}" | wc -l) ))}
nrs=$(( NODES * RANKS_PER_NODE ))
exec jsrun --nrs "$nrs" --rs_per_host "$RANKS_PER_NODE" --tasks_per_rs 1 \
    --cpu_per_rs "$THREADS_PER_RANK" --gpu_per_rs "${GPUS_PER_RS:-1}" --bind packed:"$THREADS_PER_RANK" \
    "${TRAIN_ARGV[@]}"
