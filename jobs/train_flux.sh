#!/usr/bin/env bash
#flux: --job-name=mummi-train
#flux: -N 2
#flux: -t 120m
#flux: --output=mummi-train-{{id}}.out
# Chained, restartable training under Flux, from the repository (launch/ is used):
#   flux batch jobs/train_flux.sh CONFIG.yaml OUT DATA.h5 [DATA2.h5 ...]
# Each link first queues its successor in the enclosing instance with its own jobspec (every
# `flux batch` option, the environment and the urgency carry over; dependency afterany), then
# runs launch/train_flux.sh, which asks for SIGUSR1 SIGNAL_BEFORE (default 5m) before the limit;
# training writes OUT/checkpoint.pt and exits with status 3 and the successor resumes. SIGUSR1
# sent to the link (`flux job kill --signal=SIGUSR1 LINK`) reaches the training the same way.
# The successor is cancelled when this link finishes the training (OUT/metric.json), fails
# (status other than 0 and 3) or OUT/STOP exists; a link whose successor was rejected exits 1
# after checkpointing, never 0 with no model. MAX_CHAIN (default 20) bounds the links.
set -uo pipefail
chain=${CHAIN:-0}
OUT=${2:?usage: flux batch jobs/train_flux.sh CONFIG.yaml OUT_DIR DATA.h5 [DATA2.h5 ...]}
ME=$(flux getattr jobid)
say() { echo "train_flux [job $ME, link $chain]: $*" >&2; }
if [[ -f "$OUT/metric.json" || -e "$OUT/STOP" ]]; then
    say "$OUT/metric.json or $OUT/STOP exists: the chain ends here"
    exit 0
fi

# this link's jobspec with the current environment, CHAIN + 1 and a dependency on this link
submit_successor() {
    local spec urgency
    spec=$(mktemp "${TMPDIR:-/tmp}/mummi-link.XXXXXX") || return 1
    flux --parent job info "$ME" jobspec > "$spec" || return 1
    urgency=$(flux --parent jobs -no '{urgency}' "$ME") || return 1
    CHAIN=$((chain + 1)) flux python -c '
import json, os, sys
path, dep = sys.argv[1], sys.argv[2]
with open(path) as fh:
    spec = json.load(fh)
skip = ("FLUX_URI", "FLUX_ENCLOSING_ID", "FLUX_TERMINUS_SESSION", "FLUX_KVS_NAMESPACE",
        "FLUX_PROXY_REMOTE", "FLUX_JOB_", "FLUX_TASK_", "PMI_", "PMIX_")
system = spec["attributes"]["system"]
system["environment"] = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
system["dependencies"] = [{"scheme": "afterany", "value": dep}]
with open(path, "w") as fh:
    json.dump(spec, fh)
' "$spec" "$(flux job id --to=dec "$ME")" || return 1
    flux --parent job submit --urgency="$urgency" "$spec"
    local rc=$?
    rm -f "$spec"
    return $rc
}

NEXT=""
submit_failed=0
if [[ $chain -lt ${MAX_CHAIN:-20} ]]; then
    if NEXT=$(submit_successor); then
        say "successor queued: job $NEXT"
    else
        say "ERROR: the enclosing instance rejected the successor; this link trains and" \
            "checkpoints, then fails"
        NEXT=""
        submit_failed=1
    fi
fi

# SIGUSR1 sent to the link reaches this script too (the instance forwards it to the training
# job): survive it
trap 'say "SIGUSR1: the training checkpoints and stops"' USR1
launch/train_flux.sh "$@"
status=$?
if [[ $status -gt 128 && -f "$OUT/checkpoint.pt" && ! -f "$OUT/metric.json" ]]; then
    # killed by a signal (e.g. a second SIGUSR1 after the checkpoint, or the time limit): the
    # next link resumes from the last checkpoint, as after a status-3 stop
    say "training ended by signal $((status - 128)); the next link resumes from the checkpoint"
    status=3
fi
if [[ -n $NEXT && ( $status -ne 3 || -f "$OUT/metric.json" || -e "$OUT/STOP" ) ]]; then
    say "training exited with status $status: cancelling successor $NEXT, the chain ends"
    flux --parent cancel "$NEXT" || true
fi
if [[ $status -eq 3 ]]; then
    if [[ -n $NEXT ]]; then exit 0; fi
    if [[ $submit_failed -eq 1 ]]; then exit 1; fi
    say "ERROR: stopped with a checkpoint and MAX_CHAIN=${MAX_CHAIN:-20} links used"
    exit 3
fi
exit "$status"
