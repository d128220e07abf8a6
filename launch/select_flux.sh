#!/usr/bin/env bash
# Run the in situ selector with Flux (inside a Flux instance: flux alloc / flux batch).
#   NRANKS=1 GPUS_PER_RANK=1 launch/select_flux.sh --config configs/campaign.yaml
# NRANKS (default 1; SELECT_RANKS is read too) selector ranks, one core each: the other cores of
# the instance stay free for the MD jobs that jobs.backend: flux submits into it (with every
# core taken by the selector they would wait until it stops). `flux job kill --signal=SIGTERM
# JOBID` reaches every rank (checkpoint, exit 0); SIGUSR1: an extra checkpoint.
set -euo pipefail
NRANKS=${NRANKS:-${SELECT_RANKS:-1}}
MUMMI=${MUMMI:-mummi-ml}
GPU_OPTS=()
if [[ -n "${GPUS_PER_RANK:-}" ]]; then GPU_OPTS=(-g "$GPUS_PER_RANK"); fi
exec flux run -n "$NRANKS" "${GPU_OPTS[@]}" "$MUMMI" select "$@"
