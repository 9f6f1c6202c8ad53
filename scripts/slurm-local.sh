#!/usr/bin/env bash
# A single-node Slurm on this machine, for `wmx sweep --launcher slurm` and its test:
# installs Debian's slurmctld, slurmd, slurm-client and munge when they are missing,
# writes a minimal slurm.conf (this host as the only node, one partition `debug`,
# requeue on), and starts munged, slurmctld and slurmd unless they answer already.
# Needs root (or sudo). Prints `sinfo` when the node is up.
#
#   scripts/slurm-local.sh
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
fi
if sinfo -h >/dev/null 2>&1 && [ -n "$(sinfo -h -o %T | grep -E 'idle|mix|alloc')" ]; then
    sinfo
    exit 0
fi
node=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
$SUDO mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /etc/munge /run/munge /var/lib/munge /var/log/munge
$SUDO tee /etc/slurm/slurm.conf > /dev/null <<EOF
ClusterName=wmx
SlurmctldHost=$node(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
if [ ! -s /etc/munge/munge.key ]; then
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
$SUDO chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
$SUDO chmod 0700 /etc/munge
$SUDO chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || $SUDO runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || $SUDO /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || $SUDO /usr/sbin/slurmd
for _ in $(seq 1 60); do
    if [ -n "$(sinfo -h -o %T 2>/dev/null | grep -E 'idle|mix|alloc')" ]; then
        sinfo
        exit 0
    fi
    $SUDO scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm did not come up; see /var/log/slurm/" >&2
exit 1
