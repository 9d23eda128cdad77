#!/usr/bin/env bash
# A throwaway single-node SLURM cluster for CI and development (Debian 12, root, no systemd).
#
#   scripts/slurm_cluster.sh start   # install Debian packages if missing, write config, start, wait idle
#   scripts/slurm_cluster.sh status  # exit 0 when the node is up (idle/mixed/allocated), 3 otherwise
#   scripts/slurm_cluster.sh stop    # cancel jobs, stop the daemons; safe when nothing runs
#
# It writes /etc/slurm/slurm.conf (refusing to overwrite one it did not write; stop removes it) and keeps all
# state under $KCS_SLURM_DIR (default /var/tmp/kcs-slurm), wiped on every fresh start because a
# drained/INVAL node state would otherwise survive restarts. No cgroups, no accounting
# (slurmdbd): Snakemake must use `--slurm-status-command squeue`, see docs/cluster.md.
#
# Environment knobs:
#   KCS_SLURM_DIR    state/log directory                  (default /var/tmp/kcs-slurm)
#   KCS_SLURM_GPUS   fake GPUs (GRES gpu) on the node     (default 2; 0 = no GRES)
#   KCS_SLURM_CPUS   CPUs the node advertises             (default nproc; more than nproc oversubscribes)
#   KCS_SLURM_FORCE  1 = overwrite a foreign /etc/slurm/slurm.conf
set -euo pipefail

STATE_DIR=${KCS_SLURM_DIR:-/var/tmp/kcs-slurm}
N_GPUS=${KCS_SLURM_GPUS:-2}
HOST_CPUS=$(nproc)
N_CPUS=${KCS_SLURM_CPUS:-$HOST_CPUS}
CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
GRES_CONF=$CONF_DIR/gres.conf
MARKER="# written by kcs scripts/slurm_cluster.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
NODE=$(hostname -s)
READY_TIMEOUT_S=60

log() { echo "slurm_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"
}

pid_of() {  # pid_of PIDFILE NAME -> prints the pid if that process is alive and is NAME
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm && $(<"/proc/$pid/comm") == "$name" ]] || return 1
    echo "$pid"
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || die "packages ${missing[*]} missing and apt-get not found"
    log "installing ${missing[*]}"
    # Maintainer scripts would try to start the services through invoke-rc.d; a temporary
    # policy-rc.d (exit 101) forbids that, since we start the daemons ourselves below.
    local own_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    # Wait for a concurrent apt/dpkg run instead of failing; refresh stale or missing package
    # lists only when the plain install fails.
    local apt=(apt-get -q -o DPkg::Lock::Timeout=180) rc=0
    {
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" ||
            { "${apt[@]}" update && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; }
    } >"${TMPDIR:-/tmp}/kcs-slurm-apt.log" 2>&1 || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
    [[ $rc -eq 0 ]] || { tail -n 30 "${TMPDIR:-/tmp}/kcs-slurm-apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

check_conf_is_ours() {
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF" && [[ ${KCS_SLURM_FORCE:-0} != 1 ]]; then
        die "$CONF exists and was not written by this script (a real cluster config?); set KCS_SLURM_FORCE=1 to overwrite it"
    fi
}

wipe_state_dir() {
    # Guard against wiping something that is not ours (KCS_SLURM_DIR=/ or a home directory).
    if [[ -d $STATE_DIR && -n $(ls -A "$STATE_DIR") && ! -e $STATE_DIR/.kcs-slurm ]]; then
        die "$STATE_DIR is not empty and not a kcs SLURM state dir; choose another KCS_SLURM_DIR"
    fi
    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"/{state,spool,log,run,dev}
    touch "$STATE_DIR/.kcs-slurm"
}

make_fake_gpus() {  # prints the number of fake GPU device files made
    local i
    for ((i = 0; i < N_GPUS; i++)); do
        # slurmd insists on character/block devices; clones of /dev/null (1,3) will do.
        if ! mknod "$STATE_DIR/dev/fakegpu$i" c 1 3 2>/dev/null; then
            log "warning: mknod not permitted; the node gets no GPU GRES (--gpus jobs will be rejected)"
            rm -f "$STATE_DIR"/dev/fakegpu*
            echo 0
            return
        fi
    done
    echo "$N_GPUS"
}

write_config() {  # write_config GPUS
    local gpus=$1 mem_mb node_gres="" gres_types="" overrides=""
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 3 / 4)}' /proc/meminfo)
    if [[ $gpus -gt 0 ]]; then
        node_gres=" Gres=gpu:$gpus"
        gres_types="GresTypes=gpu"
    fi
    # Advertising more CPUs than the host has needs config_overrides, or slurmd drains the node.
    [[ $N_CPUS -gt $HOST_CPUS ]] && overrides="SlurmdParameters=config_overrides"
    mkdir -p "$CONF_DIR"
    cat >"$CONF.tmp" <<EOF
$MARKER
# Single-node test cluster; state in $STATE_DIR. Do not use on a real cluster.
ClusterName=kcs
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# No cgroups in containers: track processes by PID, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Snakemake's squeue status polling needs finished jobs kept >= 3 x its first status delay.
MinJobAge=300
ReturnToService=2
MailProg=/bin/true
$gres_types
$overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$N_CPUS RealMemory=$mem_mb$node_gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    {
        echo "$MARKER"
        echo "AutoDetect=off"
        [[ $gpus -gt 0 ]] && echo "NodeName=$NODE Name=gpu File=$STATE_DIR/dev/fakegpu[0-$((gpus - 1))]"
    } >"$GRES_CONF"
}

ensure_munge_key() {
    [[ -s /etc/munge/munge.key ]] && return 0
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    pid_of "$STATE_DIR/munge/munged.pid" munged >/dev/null && return 0
    if munge_works; then
        log "using the munged that is already running (not ours; stop will leave it alone)"
        return 0
    fi
    ensure_munge_key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    # munged runs as munge, so its pid file lives in a directory munge owns.
    mkdir -p "$STATE_DIR/munge"
    chown munge:munge "$STATE_DIR/munge"
    runuser -u munge -- /usr/sbin/munged --pid-file="$STATE_DIR/munge/munged.pid" \
        </dev/null >>"$STATE_DIR/log/munged.start.log" 2>&1 || die "munged failed to start: $(cat "$STATE_DIR/log/munged.start.log")"
    local i
    for ((i = 0; i < 50; i++)); do munge_works && return 0; sleep 0.1; done
    die "munged does not answer"
}

node_state() { sinfo -h -N -n "$NODE" -o %t 2>/dev/null | head -n 1; }

daemons_up() {
    pid_of "$STATE_DIR/run/slurmctld.pid" slurmctld >/dev/null &&
        pid_of "$STATE_DIR/run/slurmd.pid" slurmd >/dev/null && munge_works
}

node_usable() {  # the node accepts work: idle, mixed or allocated, without a * (not responding)
    [[ $(node_state) =~ ^(idle|mix|alloc)$ ]]
}

wait_until_idle() {
    local deadline=$((SECONDS + READY_TIMEOUT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        [[ $state == idle ]] && return 0
        sleep 0.2
    done
    log "node $NODE is '$state', not idle after ${READY_TIMEOUT_S}s; log tails:"
    tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
    scontrol show node "$NODE" >&2 || true
    return 1
}

cmd_start() {
    require_root
    check_conf_is_ours
    install_packages
    if daemons_up && node_usable; then
        log "already running (node $NODE: $(node_state))"
        return 0
    fi
    cmd_stop
    local t0=$SECONDS gpus
    wipe_state_dir
    gpus=$(make_fake_gpus)
    write_config "$gpus"
    start_munge
    /usr/sbin/slurmctld </dev/null >>"$STATE_DIR/log/slurmctld.start.log" 2>&1 ||
        die "slurmctld failed: $(tail -n 20 "$STATE_DIR/log/slurmctld.start.log" "$STATE_DIR/log/slurmctld.log" 2>&1)"
    /usr/sbin/slurmd -N "$NODE" </dev/null >>"$STATE_DIR/log/slurmd.start.log" 2>&1 ||
        die "slurmd failed: $(tail -n 20 "$STATE_DIR/log/slurmd.start.log" "$STATE_DIR/log/slurmd.log" 2>&1)"
    wait_until_idle || die "cluster did not become ready"
    log "up in $((SECONDS - t0))s: node $NODE, $N_CPUS CPUs, $gpus fake GPUs, partition debug; logs in $STATE_DIR/log"
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME
    local pid i
    pid=$(pid_of "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    log "$2 (pid $pid) ignored TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1"
}

cmd_stop() {
    if [[ -d $STATE_DIR/run ]]; then
        stop_daemons
    fi
    # With a slurm.conf but no slurmctld, every SLURM client call (and so every snakemake start,
    # whose slurm plugin runs `scontrol show config`) waits ~10 s for a timeout; without one
    # they fail at once. start writes the config again. Only a config for this state dir goes.
    if [[ -e $CONF ]] && grep -qF "$MARKER" "$CONF" && grep -qxF "StateSaveLocation=$STATE_DIR/state" "$CONF"; then
        rm -f "$CONF" "$GRES_CONF"
    fi
}

stop_daemons() {
    if pid_of "$STATE_DIR/run/slurmctld.pid" slurmctld >/dev/null; then
        # Cancel jobs first: their slurmstepd processes outlive a stopped slurmd.
        local jobs i
        jobs=$(squeue -h -o %A 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086  # one job id per word
            scancel $jobs 2>/dev/null || true
            for ((i = 0; i < 100; i++)); do
                [[ -z $(squeue -h -t RUNNING,COMPLETING,PENDING -o %A 2>/dev/null) ]] && break
                sleep 0.1
            done
        fi
    fi
    stop_pidfile "$STATE_DIR/run/slurmd.pid" slurmd
    stop_pidfile "$STATE_DIR/run/slurmctld.pid" slurmctld
    stop_pidfile "$STATE_DIR/munge/munged.pid" munged
}

cmd_status() {
    local name pid
    for name in munge/munged run/slurmctld run/slurmd; do
        if pid=$(pid_of "$STATE_DIR/$name.pid" "${name#*/}"); then
            echo "${name#*/}: running (pid $pid)"
        else
            echo "${name#*/}: stopped"
        fi
    done
    if daemons_up && node_usable; then
        sinfo
        return 0
    fi
    return 3
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
