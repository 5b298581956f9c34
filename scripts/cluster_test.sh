#!/bin/bash
# A single-node SLURM cluster on localhost, for `make test-cluster` (tests/test_cluster.py).
#
#   scripts/cluster_test.sh up       install slurmctld, slurmd, slurm-client and munge (Debian) if missing; start
#                                    munged, slurmctld and slurmd with a private config; wait until the node is idle
#   scripts/cluster_test.sh down     stop the daemons this script started (by their pid files)
#   scripts/cluster_test.sh env      print `export SLURM_CONF=...` (sbatch/squeue need it to find the cluster)
#
# Needs root (the daemons run as root; no cgroups: proctrack/linuxproc, task/none). Nothing under /etc/slurm is
# touched: the config lives in $FV_SLURM_DIR (default /var/lib/fv-slurm) and clients find it through SLURM_CONF.
set -euo pipefail
DIR="${FV_SLURM_DIR:-/var/lib/fv-slurm}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"

install() {
    local missing=()
    for cmd in slurmctld slurmd sbatch munged; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing slurm and munge (missing: ${missing[*]})"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    fi
}

write_conf() {
    mkdir -p "$DIR/ctld" "$DIR/d" "$DIR/log"
    cat > "$CONF" <<EOF
# written by scripts/cluster_test.sh: a one-node test cluster on localhost
ClusterName=fvtest
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=3600
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

up() {
    [ "$(id -u)" = 0 ] || { echo "cluster_test.sh: needs root" >&2; exit 2; }
    install
    write_conf
    if ! pgrep -x munged >/dev/null; then
        mkdir -p /run/munge /var/log/munge /var/lib/munge
        chown munge:munge /run/munge /var/log/munge /var/lib/munge
        [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
                                         chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
        runuser -u munge -- /usr/sbin/munged
        touch "$DIR/started-munged"
    fi
    alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$DIR/slurmd.pid" || slurmd -f "$CONF" -N "$NODE"
    export SLURM_CONF="$CONF"
    for _ in $(seq 60); do
        state="$(sinfo -h -N -n "$NODE" -o %t 2>/dev/null || true)"
        case "$state" in idle|mix|alloc) echo "slurm up: node $NODE ($CPUS CPUs) $state; SLURM_CONF=$CONF"; return 0;; esac
        sleep 1
    done
    echo "cluster_test.sh: node $NODE did not become idle (state '${state:-?}'); see $DIR/log" >&2
    exit 1
}

down() {
    for d in slurmd slurmctld; do
        if alive "$DIR/$d.pid"; then kill "$(cat "$DIR/$d.pid")"; fi
    done
    if [ -f "$DIR/started-munged" ] && [ -f /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$DIR/started-munged"
    fi
    echo "slurm down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
