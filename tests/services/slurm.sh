#!/usr/bin/env bash
# A single-node SLURM for the tests: `start` prints one line to eval,
#   export SLURM_CONF=/tmp/medsynth-slurm/slurm.conf
# (everything else goes to stderr); `stop` kills the daemons it started and removes its folder.
# Debian's slurmctld/slurmd/slurm-client/munge are installed when slurmctld is missing. Runs as
# root without systemd: munged (as the `munge` user, on its own socket and key in the folder),
# slurmctld and slurmd (SlurmUser=root) with `-f <conf>`. Idempotent: a running cluster is
# reused. One node named after `hostname -s` with this machine's CPUs and memory.
#
# Gotchas met on the way (Debian's SLURM 22.05):
# - munged refuses to run as root (it wants --force); it runs as `munge`, which must own its
#   key (mode 0400) and socket folder. Our own socket means a site's munged is never touched;
#   slurm.conf's AuthInfo=socket=... points every daemon and client at it.
# - The node must resolve: NodeAddr=127.0.0.1 is given explicitly, so a hostname missing from
#   /etc/hosts does not stop slurmd from registering (torchrun's --rdzv-endpoint $(hostname)
#   still needs it to resolve).
# - ProctrackType=proctrack/pgid: with proctrack/linuxproc a job's children can outlive it;
#   cgroup plugins need a writable cgroup tree (not in a container) -> TaskPlugin=task/none.
# - With CR_CPU_Memory and no DefMemPerCPU a job is given the node's whole memory, so only one
#   job runs at a time: DefMemPerCPU keeps small jobs side by side.
# - Time limits and --signal=B:TERM@N are checked by slurmctld about every 30 s, so a signal
#   may come up to that much earlier or later than asked; limits are whole minutes.
# - Finished jobs stay in squeue --states=all / scontrol for MinJobAge seconds, then up to
#   another purge interval (about a minute) before they leave.
# - slurmd.log starts with "mpi/pmix: can not load PMIx library": harmless (MpiDefault=none).
# - srun turns a SIGTERM it receives into SIGKILL for its tasks: a batch script that does
#   `exec srun torchrun ...` must get its time-limit warning on the steps (--signal=TERM@N, no
#   B:); torchrun's workers run in their own sessions, outside proctrack/pgid's reach.
set -euo pipefail

DIR="${MEDSYNTH_SLURM_DIR:-/tmp/medsynth-slurm}"
CONF="$DIR/slurm.conf"
CTLD_PORT="${MEDSYNTH_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${MEDSYNTH_SLURMD_PORT:-6818}"
MUNGE_SOCKET="$DIR/munge/munge.socket"

log() { echo "slurm.sh: $*" >&2; }

install_slurm() {
  if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    log "SLURM is not installed: run 'sudo apt-get install slurmctld slurmd slurm-client munge', then this again."
    exit 1
  fi
  log "installing Debian's slurmctld, slurmd, slurm-client and munge..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq slurmctld slurmd slurm-client munge >&2
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
  local mdir="$DIR/munge"
  if alive "$mdir/munged.pid"; then return 0; fi
  mkdir -p "$mdir"
  if [ ! -f "$mdir/munge.key" ]; then
    dd if=/dev/urandom of="$mdir/munge.key" bs=1024 count=1 status=none
  fi
  chown -R munge:munge "$mdir"
  chmod 0711 "$mdir"  # clients of any user reach the socket through it (munged insists)
  chmod 0400 "$mdir/munge.key"
  runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$mdir/munge.key" \
    --pid-file="$mdir/munged.pid" --log-file="$mdir/munged.log" --seed-file="$mdir/munged.seed"
}

write_conf() {
  local host cpus mem node
  host="$(hostname -s)"
  node="$(slurmd -C | head -n 1)"  # NodeName=... CPUs=... RealMemory=...
  cpus="$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")"
  mem="$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")"
  mem=$((mem * 9 / 10))  # leave the OS some room, or slurmd reports the node as low on memory
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<EOF
# Written by tests/services/slurm.sh: a one-node test cluster, no accounting.
ClusterName=medsynth-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=512
KillWait=30
MinJobAge=10
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=$host Default=NO MaxTime=00:05:00 State=UP
EOF
}

wait_idle() {
  local host i state
  host="$(hostname -s)"
  for i in $(seq 1 120); do
    state="$(SLURM_CONF="$CONF" sinfo --noheader --nodes="$host" --format=%T 2>/dev/null | head -n 1 || true)"
    case "$state" in
      idle | mixed | allocated) return 0 ;;
      down* | drain*) SLURM_CONF="$CONF" scontrol update nodename="$host" state=resume >&2 || true ;;
    esac
    sleep 0.5
  done
  log "the node did not become idle within a minute (state '${state:-none}'); see $DIR/log/"
  exit 1
}

start() {
  command -v slurmctld >/dev/null 2>&1 || install_slurm
  if [ "$(id -u)" != "0" ]; then
    log "the test cluster runs its daemons as root: run 'sudo bash $0 start'"
    exit 1
  fi
  mkdir -p "$DIR"
  start_munge
  if ! alive "$DIR/slurmctld.pid" || ! alive "$DIR/slurmd.pid"; then
    [ -f "$CONF" ] || write_conf
    alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF" >&2
    alive "$DIR/slurmd.pid" || slurmd -f "$CONF" >&2
  fi
  wait_idle
  log "one-node cluster up ($(hostname -s)); logs in $DIR/log/"
  echo "export SLURM_CONF=$CONF"
}

stop_pid() {
  local pidfile="$1" pid i
  alive "$pidfile" || return 0
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  rm -rf "$DIR"
  log "stopped; $DIR removed"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: bash $0 start|stop   (start prints: export SLURM_CONF=...)" >&2
    exit 2
    ;;
esac
