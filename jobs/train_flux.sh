#!/usr/bin/env bash
#flux: --job-name=mummi-train
#flux: -N 2
#flux: -t 120m
#flux: --output=mummi-train-{{id}}.out
# Chained, restartable training under Flux:  flux batch jobs/train_flux.sh CONFIG.yaml OUT DATA.h5
# launch/train_flux.sh asks for SIGUSR1 five minutes before the limit; training writes
# OUT/checkpoint.pt and exits with status 3; this script resubmits itself to the enclosing
# instance (flux --parent) and the next job resumes until OUT/metric.json exists.
set -uo pipefail
launch/train_flux.sh "$@"
status=$?
chain=${CHAIN:-0}
if [[ $status -eq 3 && ! -f "$2/metric.json" && $chain -lt ${MAX_CHAIN:-20} ]]; then
    flux --parent batch --env=CHAIN=$(( chain + 1 )) "$0" "$@"
    exit 0
fi
exit "$status"
