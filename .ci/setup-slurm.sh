#!/usr/bin/env bash
# Set up a real single-node Slurm cluster on this machine for the Slurm backend tests.
#
# Installs Debian's slurm-wlm (slurmctld + slurmd) and munge with apt-get, writes a single-node
# slurm.conf (node "localhost", all CPUs of this machine up to SLURM_CPUS, jobs run as root),
# starts munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
#
# Idempotent and fast when the cluster is already up (then it only checks `sinfo`).
# Needs root (CI and the developer machines run as root). Exit status 0: the cluster is up.
#
# Usage:  bash .ci/setup-slurm.sh            # install if needed, (re)start, wait <= 60 s
# Env:    SLURM_CPUS (default 2)  SLURM_WAIT_S (default 60)  SLURM_FORCE_RESTART=1
set -euo pipefail

CPUS="${SLURM_CPUS:-2}"
WAIT_S="${SLURM_WAIT_S:-60}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/slurm

log() { echo "setup-slurm: $*" >&2; }

node_state() { timeout 10 sinfo -h -N -n localhost -o '%T' 2>/dev/null | head -n1 || true; }

if [[ "$(id -u)" != 0 ]]; then
  log "must run as root (got uid $(id -u))"
  exit 1
fi

if [[ "${SLURM_FORCE_RESTART:-0}" != 1 ]] && command -v sinfo >/dev/null \
    && [[ -f "$CONF" ]] && [[ "$(node_state)" =~ ^(idle|mixed|allocated)$ ]]; then
  log "already up: node localhost is $(node_state)"
  exit 0
fi

# --- install ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  log "installing slurm-wlm and munge with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# --- munge -----------------------------------------------------------------------------------
mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge 2>/dev/null || true
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "starting munged"
  pkill_pidfile() { [[ -f "$1" ]] && kill "$(cat "$1")" 2>/dev/null || true; }
  pkill_pidfile /run/munge/munged.pid
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c "/usr/sbin/munged --force" || /usr/sbin/munged --force
  else
    /usr/sbin/munged --force
  fi
  for _ in $(seq 1 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
  done
  munge -n | unmunge >/dev/null || { log "munged does not answer"; exit 1; }
fi

# --- slurm.conf ------------------------------------------------------------------------------
mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS" "$RUN"
cat >"$CONF.new" <<EOF
# Single-node Slurm for mummi-ml's backend tests (written by .ci/setup-slurm.sh).
ClusterName=mummi-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups in containers: track processes by parent pid, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for an hour (there is no slurmdbd for sacct).
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
changed=1
if [[ -f "$CONF" ]] && cmp -s "$CONF" "$CONF.new"; then changed=0; fi
mv "$CONF.new" "$CONF"
rm -f "$CONF_DIR/cgroup.conf"  # 22.05 autodetects cgroups; unused by linuxproc

# --- daemons ---------------------------------------------------------------------------------
stop_daemon() {  # pidfile
  local pid
  if [[ -f "$1" ]]; then
    pid="$(cat "$1")"
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$1"
  fi
}
running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ "$changed" == 1 || "${SLURM_FORCE_RESTART:-0}" == 1 ]]; then
  stop_daemon "$RUN/slurmd.pid"
  stop_daemon "$RUN/slurmctld.pid"
fi
if ! running "$RUN/slurmctld.pid"; then
  log "starting slurmctld"
  /usr/sbin/slurmctld -f "$CONF"
fi
if ! running "$RUN/slurmd.pid"; then
  log "starting slurmd"
  /usr/sbin/slurmd -f "$CONF" -N localhost
fi

# --- wait for the node -------------------------------------------------------------------------
deadline=$((SECONDS + WAIT_S))
state=""
while ((SECONDS < deadline)); do
  state="$(node_state)"
  case "$state" in
    idle | mixed | allocated) log "up: node localhost is $state ($CPUS CPUs)"; exit 0 ;;
    down* | drain* | *\*)
      timeout 10 scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
log "node localhost not idle after ${WAIT_S} s (state: '${state:-no answer}'); see $LOGS/*.log"
tail -n 20 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 2>/dev/null || true
exit 1
