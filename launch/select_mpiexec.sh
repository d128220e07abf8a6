#!/usr/bin/env bash
# Run the in situ selector on NRANKS MPI ranks with mpiexec (MPICH/Open MPI; laptop or node).
#   NRANKS=4 launch/select_mpiexec.sh --config configs/campaign.yaml [--once] [--set k=v ...]
# SIGTERM to mpiexec is forwarded to the ranks: they checkpoint and exit 0.
set -euo pipefail
NRANKS=${NRANKS:-2}
MUMMI=${MUMMI:-mummi-ml}
exec mpiexec -n "$NRANKS" "$MUMMI" select "$@"
