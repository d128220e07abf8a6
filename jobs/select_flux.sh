#!/usr/bin/env bash
#FLUX: --job-name=mummi-select
#FLUX: -N 1
#FLUX: -n 4
#FLUX: -t 4h
# The selector as a chain of Flux batch jobs ("links"), each a Flux instance of its own:
#   CONFIG=configs/campaign.yaml STATE_DIR=campaign/selector flux batch jobs/select_flux.sh
# Each link
#   1. ends at once (exit 0) when STATE_DIR/STOP exists;
#   2. queues its successor in the enclosing instance (flux --parent job submit; dependency
#      afterany on this link) with this link's own jobspec: every option given to `flux batch`
#      (resources, time limit, queue, bank, output, attributes, environment) and its urgency
#      carry over, also for `flux batch < select_flux.sh`. Queued first, so that a link killed
#      hard still has one;
#   3. runs the selector on SELECT_RANKS ranks (default 1) and leaves the other cores of the
#      instance to the MD jobs (jobs.backend: flux submits them into this instance): MD_CORES
#      (default: the rest) must fit beside the selector, or the link fails at once;
#   4. sends the selector SIGTERM STOP_BEFORE seconds (default 180) before the instance expires
#      (`flux job timeleft`), or when this script is signalled (flux cancel / the time limit);
#      the ranks checkpoint and exit 0, and the successor restores the checkpoint;
#   5. cancels its successor when the selector failed (a selector that fails at once does not
#      burn MAX_RESTARTS links) or when STATE_DIR/STOP exists (the selector itself stops within a
#      poll interval of `touch STATE_DIR/STOP`, so STOP ends the chain at once).
# A pre-expiration signal (`flux batch --signal=SIGUSR1@...`) is forwarded by the instance to
# the selector as SIGUSR1: an extra checkpoint, not a stop.
# Environment: CONFIG, STATE_DIR, MUMMI (the command, default mummi-ml), MAX_RESTARTS (20),
# SELECT_RANKS, MD_CORES, STOP_BEFORE.
set -euo pipefail
CONFIG=${CONFIG:-configs/campaign.yaml}
STATE_DIR=${STATE_DIR:-campaign/selector}
RESTART=${RESTART:-0}
MAX_RESTARTS=${MAX_RESTARTS:-20}
STOP_BEFORE=${STOP_BEFORE:-180}
MUMMI=${MUMMI:-mummi-ml}
ME=$(flux getattr jobid)   # this link's id in the enclosing instance
say() { echo "$(date +%T) select_flux [job $ME, link $RESTART]: $*" >&2; }

if [[ -e "$STATE_DIR/STOP" ]]; then
    say "$STATE_DIR/STOP exists: the chain ends here"
    exit 0
fi

NCORES=$(flux resource list -s up -no '{ncores}')
SELECT_RANKS=${SELECT_RANKS:-1}
MD_CORES=${MD_CORES:-$(( NCORES - SELECT_RANKS ))}
if (( SELECT_RANKS < 1 || MD_CORES < 0 || SELECT_RANKS + MD_CORES > NCORES )); then
    say "ERROR: SELECT_RANKS=$SELECT_RANKS selector ranks and MD_CORES=$MD_CORES MD cores do not" \
        "fit in the $NCORES cores of this instance"
    exit 2
fi
TIMELEFT=$(flux job timeleft)   # seconds until this instance expires (4294967295: no limit)
if (( TIMELEFT <= STOP_BEFORE )); then
    say "ERROR: the time limit leaves ${TIMELEFT} s, not more than STOP_BEFORE=${STOP_BEFORE} s"
    exit 2
fi

# this link's jobspec (from the enclosing instance), with the current environment, RESTART + 1
# and a dependency on this link, submitted to the enclosing instance with this link's urgency
submit_successor() {
    local spec urgency
    spec=$(mktemp "${TMPDIR:-/tmp}/mummi-link.XXXXXX") || return 1
    flux --parent job info "$ME" jobspec > "$spec" || return 1
    urgency=$(flux --parent jobs -no '{urgency}' "$ME") || return 1
    RESTART=$((RESTART + 1)) flux python -c '
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
SUBMIT_FAILED=0
if (( RESTART < MAX_RESTARTS )); then
    if NEXT=$(submit_successor); then
        say "successor queued: job $NEXT"
    else
        say "ERROR: the enclosing instance rejected the successor; this link runs, then the" \
            "chain ends"
        NEXT=""
        SUBMIT_FAILED=1
    fi
else
    say "MAX_RESTARTS=$MAX_RESTARTS reached: no successor"
fi

JOB=$(flux submit --job-name=mummi-selector -n "$SELECT_RANKS" \
      "$MUMMI" select --config "$CONFIG" --state-dir "$STATE_DIR")
say "selector: job $JOB on $SELECT_RANKS core(s), $MD_CORES core(s) left to MD jobs"
flux job attach "$JOB" &   # the selector's log goes to this job's output
ATTACH=$!
stop_selector() { flux job kill --signal=SIGTERM "$JOB" 2>/dev/null || true; }
trap 'say "signalled: stopping the selector"; stop_selector' TERM HUP INT ALRM
# SIGUSR1 (flux batch --signal, flux job kill --signal=SIGUSR1) reaches this script too, and the
# instance forwards it to the selector (an extra checkpoint): survive it
trap 'say "SIGUSR1: the selector checkpoints"' USR1
WAIT_OPTS=()
if (( TIMELEFT < 4294967295 )); then WAIT_OPTS=(-t "$(( TIMELEFT - STOP_BEFORE ))"); fi
flux job wait-event "${WAIT_OPTS[@]}" "$JOB" clean >/dev/null 2>&1 &
WAITER=$!
while kill -0 "$WAITER" 2>/dev/null; do wait "$WAITER" || true; done  # a trap interrupts wait
if ! flux job wait-event -t 1 "$JOB" clean >/dev/null 2>&1; then  # still running: time is up
    say "${STOP_BEFORE} s left: stopping the selector"
    stop_selector
    flux job wait-event -t "$STOP_BEFORE" "$JOB" clean >/dev/null 2>&1 || flux cancel "$JOB"
fi
wait "$ATTACH" 2>/dev/null || true
set +e
flux job status "$JOB"
rc=$?
set -e
"$MUMMI" status "$STATE_DIR" || true

if [[ -n $NEXT ]]; then
    if [[ $rc -ne 0 ]]; then
        say "the selector failed (exit status $rc): cancelling successor $NEXT, the chain ends"
        flux --parent cancel "$NEXT" || true
    elif [[ -e "$STATE_DIR/STOP" ]]; then
        say "$STATE_DIR/STOP exists: cancelling successor $NEXT, the chain ends"
        flux --parent cancel "$NEXT" || true
    fi
fi
if [[ $rc -eq 0 && $SUBMIT_FAILED -eq 1 ]]; then rc=1; fi
exit "$rc"
