#!/usr/bin/env bash
# Run the in situ selector with jsrun (LSF, e.g. Summit/Lassen-like machines), one rank and one
# GPU per resource set.
#   NRANKS=8 CORES_PER_RANK=7 launch/select_jsrun.sh --config configs/campaign.yaml
set -euo pipefail
NRANKS=${NRANKS:-2}
CORES=${CORES_PER_RANK:-7}
MUMMI=${MUMMI:-mummi-ml}
exec jsrun -n "$NRANKS" -a 1 -c "$CORES" -g 1 "$MUMMI" select "$@"
