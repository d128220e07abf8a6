#!/usr/bin/env bash
# One MPMD job: NCOUPLE continuum coupler ranks stream patches over MPI to NSELECT selector ranks.
#   NCOUPLE=2 NSELECT=2 PATCHES=10000 launch/campaign_mpiexec.sh configs/campaign.yaml [select opts]
# The selector exits after every coupler sent END when --once is given; otherwise it keeps
# serving (spool files, MD jobs) until SIGTERM.
set -euo pipefail
CONFIG=${1:?usage: campaign_mpiexec.sh CONFIG.yaml [select options]}
shift
NCOUPLE=${NCOUPLE:-2}
NSELECT=${NSELECT:-2}
PATCHES=${PATCHES:-10000}
MUMMI=${MUMMI:-mummi-ml}
exec mpiexec -n "$NCOUPLE" "$MUMMI" couple --mpi --patches "$PATCHES" --no-progress \
        --config "$CONFIG" \
     : -n "$NSELECT" "$MUMMI" select --mpmd --config "$CONFIG" "$@"
