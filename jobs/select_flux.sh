#!/usr/bin/env bash
#FLUX: --job-name=mummi-select
#FLUX: -N 1
#FLUX: -n 4
#FLUX: -t 4h
# The selector as a chain of Flux batch jobs. Submit with
#   CONFIG=configs/campaign.yaml STATE_DIR=campaign/selector flux batch jobs/select_flux.sh
# The selector step is stopped with SIGTERM STOP_BEFORE seconds before the job's expiration
# (it checkpoints and exits 0); then the next job of the chain is submitted to the parent
# instance and restarts from the checkpoint. Stop the chain: touch STATE_DIR/STOP.
set -euo pipefail
CONFIG=${CONFIG:-configs/campaign.yaml}
STATE_DIR=${STATE_DIR:-campaign/selector}
RESTART=${RESTART:-0}
MAX_RESTARTS=${MAX_RESTARTS:-20}
STOP_BEFORE=${STOP_BEFORE:-180}
MUMMI=${MUMMI:-mummi-ml}
SCRIPT=${SCRIPT:-jobs/select_flux.sh}   # this file, relative to the submit directory
NTASKS=$(flux resource list -no {ncores} -s up | head -n1)
NTASKS=${SELECT_RANKS:-$NTASKS}

EXPIRATION=$(flux job info "$(flux getattr jobid)" R | python3 -c \
  'import json, sys; print(int(json.load(sys.stdin)["execution"]["expiration"]))')
RUN_FOR=$(( EXPIRATION - $(date +%s) - STOP_BEFORE ))
JOB=$(flux submit -n "$NTASKS" "$MUMMI" select --config "$CONFIG" --state-dir "$STATE_DIR")
sleep "$RUN_FOR" &
SLEEPER=$!
flux job wait-event "$JOB" clean &
WAITER=$!
wait -n "$SLEEPER" "$WAITER" || true
flux job kill --signal=SIGTERM "$JOB" 2>/dev/null || true
flux job wait-event -t 300 "$JOB" clean || flux job cancel "$JOB"
kill "$SLEEPER" "$WAITER" 2>/dev/null || true
"$MUMMI" status "$STATE_DIR" || true

if [[ ! -e "$STATE_DIR/STOP" && "$RESTART" -lt "$MAX_RESTARTS" ]]; then
  RESTART=$((RESTART + 1)) CONFIG="$CONFIG" STATE_DIR="$STATE_DIR" SCRIPT="$SCRIPT" \
    flux --parent batch "$SCRIPT"
fi
