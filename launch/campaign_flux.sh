#!/usr/bin/env bash
# A campaign under Flux through the spool directory (durable hand-over; Flux has no MPMD
# launch): NCOUPLE coupler ranks write atomic HDF5 files, NSELECT selector ranks claim them.
#   NCOUPLE=2 NSELECT=1 PATCHES=10000 launch/campaign_flux.sh configs/campaign.yaml SPOOL_DIR
# NSELECT (default 1) selector ranks: the cores left over go to the MD jobs (jobs.backend: flux).
set -euo pipefail
CONFIG=${1:?usage: campaign_flux.sh CONFIG.yaml SPOOL_DIR}
SPOOL=${2:?usage: campaign_flux.sh CONFIG.yaml SPOOL_DIR}
NCOUPLE=${NCOUPLE:-2}
NSELECT=${NSELECT:-1}
PATCHES=${PATCHES:-10000}
MUMMI=${MUMMI:-mummi-ml}
flux submit -n "$NCOUPLE" "$MUMMI" couple --spool "$SPOOL" --patches "$PATCHES" --no-progress \
     --config "$CONFIG"
exec flux run -n "$NSELECT" "$MUMMI" select --config "$CONFIG" --spool "$SPOOL"
