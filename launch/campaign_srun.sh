#!/usr/bin/env bash
# One MPMD Slurm job step: coupler ranks 0..NCOUPLE-1, selector ranks after them (srun
# --multi-prog). Inside an allocation with NCOUPLE + NSELECT tasks.
#   NCOUPLE=4 NSELECT=4 PATCHES=100000 launch/campaign_srun.sh configs/campaign.yaml
set -euo pipefail
CONFIG=${1:?usage: campaign_srun.sh CONFIG.yaml}
NCOUPLE=${NCOUPLE:-2}
NSELECT=${NSELECT:-2}
PATCHES=${PATCHES:-10000}
MUMMI=${MUMMI:-mummi-ml}
source "$(dirname "$0")/slurm_mpi.sh"   # SLURM_MPI_TYPE: pmi2 for MPICH, pmix for Open MPI
CONF=$(mktemp "${TMPDIR:-/tmp}/mummi-mpmd.XXXXXX")
trap 'rm -f "$CONF"' EXIT
printf '%s\n' \
  "0-$((NCOUPLE - 1)) $MUMMI couple --mpi --patches $PATCHES --no-progress --config $CONFIG" \
  "$NCOUPLE-$((NCOUPLE + NSELECT - 1)) $MUMMI select --mpmd --config $CONFIG" > "$CONF"
srun --ntasks=$((NCOUPLE + NSELECT)) --kill-on-bad-exit=0 --multi-prog "$CONF"
