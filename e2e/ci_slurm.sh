#!/usr/bin/env bash
# ci_slurm.sh — install Slurm and munge and start a one-node cluster, so the
# e2e test TestSlurmSrun can run `srun -n 4 strand check ...`.
#
#   bash e2e/ci_slurm.sh          install (if needed) and start; idempotent
#   bash e2e/ci_slurm.sh stop     stop the daemons it started (by pid file)
#
# It records the pid files of the daemons it starts in $STRAND_SLURM_STATE
# (default /run/strand-ci-slurm.started); `stop` stops only those, so a
# cluster that was already running (say, started by another test run that
# is still going) stays up. scripts/test.sh gives every run its own file.
#
# Needs root and Debian's apt. Without root it prints why and exits 0: the
# Slurm test then skips with a message. The steps are the ones in
# deploy/slurm/README.md ("A one-node cluster for testing").
set -euo pipefail

STARTED="${STRAND_SLURM_STATE:-/run/strand-ci-slurm.started}" # pid files of the daemons this run started

if [[ "${1:-}" == "stop" ]]; then
  [[ -s "$STARTED" ]] || exit 0
  while read -r f; do
    if [[ -s "$f" ]]; then
      pid="$(cat "$f")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done < "$STARTED"
  rm -f "$STARTED"
  exit 0
fi

if [[ "$(id -u)" != 0 ]]; then
  echo "ci_slurm.sh: not root; not starting Slurm (the Slurm e2e test will skip)"
  exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v srun >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

running() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
started() { echo "$1" >> "$STARTED"; }

# 1. munge: a 1024-byte key owned by munge, mode 400; the daemon runs as munge.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
  runuser -u munge -- munged
  started /run/munge/munged.pid
fi

# 2. slurm.conf for this host; no cgroup.conf (22.05 autodetects without one).
HOST="$(hostname -s)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=${HOST}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
NodeName=${HOST} CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF

# 3. controller, then node daemon; wait until the node is idle.
running /run/slurmctld.pid || { slurmctld; started /run/slurmctld.pid; }
running /run/slurmd.pid || { slurmd; started /run/slurmd.pid; }
for _ in $(seq 1 60); do
  state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
  if [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]]; then
    echo "ci_slurm.sh: one-node Slurm cluster up on ${HOST} (${state})"
    exit 0
  fi
  sleep 0.5
done
echo "ci_slurm.sh: the node never became idle; sinfo says:" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
