#!/usr/bin/env bash
# Run the in situ selector with Flux (inside a Flux instance: flux alloc / flux batch).
#   NRANKS=8 GPUS_PER_RANK=1 launch/select_flux.sh --config configs/campaign.yaml
# `flux job kill --signal=SIGTERM JOBID` (or SIGUSR1) reaches every rank.
set -euo pipefail
NRANKS=${NRANKS:-2}
MUMMI=${MUMMI:-mummi-ml}
GPU_OPTS=()
if [[ -n "${GPUS_PER_RANK:-}" ]]; then GPU_OPTS=(-g "$GPUS_PER_RANK"); fi
exec flux run -n "$NRANKS" "${GPU_OPTS[@]}" "$MUMMI" select "$@"
