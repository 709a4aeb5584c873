#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, to try (and test) the cluster path: hydra/launcher=slurm_cpu.
#
#   scripts/local_slurm.sh up       install slurm-wlm + munge if absent (root, apt-get), write the config into
#                                   $ATTNBENCH_SLURM_DIR (default /tmp/attnbench-slurm), start munged, slurmctld
#                                   and slurmd, wait until the node is idle, print `export SLURM_CONF=...`
#   scripts/local_slurm.sh down     cancel its jobs, stop the daemons it started (pid files in its folder)
#   scripts/local_slurm.sh status   sinfo and squeue, or "down"
#
# One node (this machine's CPUs and free memory), one partition `cpu` (default), no accounting (job states come
# from squeue). `up` twice is fine; exits non-zero with the reason when SLURM cannot be installed or started.
set -euo pipefail

DIR="${ATTNBENCH_SLURM_DIR:-/tmp/attnbench-slurm}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"
CTLD_PORT="${ATTNBENCH_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${ATTNBENCH_SLURMD_PORT:-6818}"
export SLURM_CONF="$CONF"

die() { echo "local_slurm: $*" >&2; exit 1; }

# the pid in $1's pid file, if that process is alive and runs the program $2
alive() {
  local pid
  pid="$(cat "$DIR/$1.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$2" || return 1
  echo "$pid"
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sinfo >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and installing them needs root (apt-get)"
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get here"
  echo "local_slurm: installing slurm-wlm munge (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends slurm-wlm munge >"$DIR/log/apt.log" 2>&1 \
    || { apt-get update -q >>"$DIR/log/apt.log" 2>&1 \
         && apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$DIR/log/apt.log" 2>&1; } \
    || die "apt-get install slurm-wlm munge failed (see $DIR/log/apt.log)"
  # the packages start their own daemons on the default paths: ours use the config below, stop theirs
  for svc in slurmctld slurmd munge; do
    command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1 || true
  done
}

write_config() {
  local cpus mem_mb
  cpus="$(nproc)"
  mem_mb="$(awk '/MemAvailable/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"  # 80% of what is free now
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
  chmod 700 "$DIR" "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null \
                                     && chmod 400 "$DIR/munge/munge.key"; }
  cat >"$CONF.new" <<EOF
# written by scripts/local_slurm.sh: a one-node test cluster (nothing here is for production)
ClusterName=attnbench
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a job step credential's lifetime, and how long a requeued job waits before it may start again
# (default 120 s; the tests requeue jobs)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# a requeued job eligible again (its BeginTime passed) starts at the next scheduling pass: every 2 s, not 60 s
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=none
# no accounting: sacct has nothing to say, squeue has the job states
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# short delays, suited to tests: finished jobs leave squeue after MinJobAge s, a node back after a failure
# returns to service by itself, a cancelled job's processes get KillWait s between SIGTERM and SIGKILL
MinJobAge=30
ReturnToService=2
KillWait=10
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  # keep the running cluster's config when only the free memory moved
  if [ -f "$CONF" ] && diff -q <(grep -v RealMemory "$CONF") <(grep -v RealMemory "$CONF.new") >/dev/null; then
    rm -f "$CONF.new"
  else
    [ -f "$CONF" ] && CHANGED=1  # a cluster started with the old one restarts its SLURM daemons (up)
    mv "$CONF.new" "$CONF"
  fi
}

# stop the daemon of pid file $1 (program $1) if it runs: SIGTERM, then SIGKILL after 10 s
stop_daemon() {
  local pid
  pid="$(alive "$1" "$1")" || { rm -f "$DIR/$1.pid"; return 0; }
  kill "$pid"
  for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
  [ -d "/proc/$pid" ] && kill -9 "$pid"
  rm -f "$DIR/$1.pid"
}

wait_idle() {
  local state=""
  for _ in $(seq 120); do
    state="$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -1 || true)"
    case "$state" in
      idle|mix|alloc) return 0 ;;
      down*|drain*|fail*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  die "node $NODE not idle after 60 s (state: '${state:-no answer}'); logs: $DIR/log/"
}

up() {
  [ "$(id -u)" = 0 ] || die "needs root: it installs slurm-wlm and munge (apt-get) and runs slurmd, which starts \
the jobs as their users"
  mkdir -p "$DIR/log"
  install_packages
  CHANGED=0
  write_config
  if [ "$CHANGED" = 1 ]; then  # new settings: slurmctld and slurmd read them at start (jobs are kept)
    echo "local_slurm: config changed, restarting slurmctld and slurmd" >&2
    stop_daemon slurmd
    stop_daemon slurmctld
  fi
  if ! alive munged munged >/dev/null; then
    munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munged.pid" \
      --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" --force 9>&- \
      || die "munged did not start (see $DIR/log/munged.log)"
  fi
  if ! alive slurmctld slurmctld >/dev/null; then
    slurmctld -f "$CONF" 9>&- || die "slurmctld did not start (see $DIR/log/slurmctld.log)"
  fi
  if ! alive slurmd slurmd >/dev/null; then
    slurmd -f "$CONF" 9>&- || die "slurmd did not start (see $DIR/log/slurmd.log)"
  fi
  wait_idle
  echo "local_slurm: node $NODE ($(nproc) CPUs) idle in partition cpu; config $CONF" >&2
  echo "export SLURM_CONF=$CONF"
}

down() {
  if alive slurmctld slurmctld >/dev/null; then
    scancel --full --quiet --user "$(id -un)" >/dev/null 2>&1 || true
  fi
  for name in slurmd slurmctld munged; do
    stop_daemon "$name"
  done
  echo "local_slurm: down" >&2
}

status() {
  if alive slurmctld slurmctld >/dev/null && alive slurmd slurmd >/dev/null; then
    sinfo
    squeue
  else
    echo "local_slurm: down (scripts/local_slurm.sh up starts it)"
    return 3
  fi
}

case "${1:-}" in
  up|down|status)
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock 9  # concurrent callers (pytest workers) take turns; the daemons start without fd 9
    "$1" ;;
  *) echo "usage: $0 up|down|status   (folder: $DIR)" >&2; exit 2 ;;
esac
