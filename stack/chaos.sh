#!/usr/bin/env bash
# The chaos stack: services of their own for the fault-injection suite
# (tests/chaos), which stops and restarts them without disturbing the dev
# stack of stack/services.sh (9092/5433) that other tests use at the same time.
#
#   pg        PostgreSQL on 127.0.0.1:5434
#   kafka     one Kafka broker (KRaft, combined) on 127.0.0.1:9192 (controller 9193)
#   cluster   three Kafka nodes (KRaft, each broker+controller) on
#             127.0.0.1:9292-9294 (controllers 9295-9297); replication factor 3
#             and min.insync.replicas 2 for new and internal topics
#
#   stack/chaos.sh start [pg] [kafka] [cluster]   start (default: pg kafka), wait until ready
#   stack/chaos.sh stop [pg] [kafka] [cluster]    stop (default: all)
#   stack/chaos.sh status [pg] [kafka] [cluster]  exit 0 only when all named run (default: all)
#   stack/chaos.sh restart pg [fast|immediate]    pg_ctl restart with that shutdown mode
#   stack/chaos.sh restart kafka [term|kill]      stop (SIGTERM, or SIGKILL) and start the broker
#   stack/chaos.sh node stop|kill|start N         one node (1-3) of the cluster
#   stack/chaos.sh endpoints                      the URLs above as JSON (for the tests)
#   stack/chaos.sh clean                          stop everything, delete .stack/chaos
#
# It sources stack/services.sh for every function and only points its
# variables at other ports and directories (.stack/chaos/...).  The broker
# jars are shared with the dev stack (.stack/kafka/libs).  The JVM heaps are
# small (STACK_CHAOS_KAFKA_HEAP_OPTS, default -Xms128m -Xmx384m per node).
set -euo pipefail

# shellcheck source=stack/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

LOG_TAG=chaos
CHAOS=$STACK/chaos
LOCK_FILE=$CHAOS/services.lock
CHAOS_HEAP=${STACK_CHAOS_KAFKA_HEAP_OPTS:--Xms128m -Xmx384m}

SINGLE_PORT=9192
SINGLE_CONTROLLER_PORT=9193
CLUSTER_NODES=(1 2 3)
CLUSTER_PORT_BASE=9291        # node N: broker 9291+N, controller 9294+N
CLUSTER_CONTROLLER_BASE=9294
CHAOS_PG_PORT=5434

cluster_voters() {
    local n voters=()
    for n in "${CLUSTER_NODES[@]}"; do voters+=("$n@127.0.0.1:$((CLUSTER_CONTROLLER_BASE + n))"); done
    (IFS=,; printf '%s' "${voters[*]}")
}

select_kafka_dir() {  # select_kafka_dir DIR: the per-node paths
    KAFKA_HOME=$1
    KAFKA_DATA=$KAFKA_HOME/data
    KAFKA_LOGS=$KAFKA_HOME/logs
    KAFKA_CONF=$KAFKA_HOME/server.properties
    KAFKA_PIDFILE=$KAFKA_HOME/kafka.pid
    KAFKA_HEAP_OPTS=$CHAOS_HEAP
    mkdir -p "$KAFKA_HOME" "$KAFKA_LOGS"
}

select_single() {
    select_kafka_dir "$CHAOS/kafka"
    KAFKA_CLUSTER_ID_FILE=$KAFKA_HOME/cluster.id
    KAFKA_PORT=$SINGLE_PORT
    KAFKA_CONTROLLER_PORT=$SINGLE_CONTROLLER_PORT
    KAFKA_NODE_ID=1 KAFKA_VOTERS= KAFKA_RF=1 KAFKA_MIN_ISR=1
    NODE_NAME="kafka"
}

select_node() {  # select_node N
    [[ $1 =~ ^[123]$ ]] || die "cluster nodes are 1, 2 and 3, not '$1'"
    select_kafka_dir "$CHAOS/cluster/node$1"
    KAFKA_CLUSTER_ID_FILE=$CHAOS/cluster/cluster.id
    KAFKA_PORT=$((CLUSTER_PORT_BASE + $1))
    KAFKA_CONTROLLER_PORT=$((CLUSTER_CONTROLLER_BASE + $1))
    KAFKA_NODE_ID=$1 KAFKA_VOTERS=$(cluster_voters) KAFKA_RF=3 KAFKA_MIN_ISR=2
    NODE_NAME="cluster node $1"
}

select_pg() {
    PG_PORT=$CHAOS_PG_PORT
    PG_LINK=$CHAOS/postgres
    if [[ $EUID -eq 0 ]]; then
        PG_HOME=/var/tmp/streamproc-pg-chaos-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)
    else
        PG_HOME=$PG_LINK
    fi
    PG_DATA=$PG_HOME/data
    PG_LOGFILE=$PG_HOME/log/postgres.log
    mkdir -p "$CHAOS"
}

resolve_libs() {  # the jars are the dev stack's: resolve them under its lock
    mkdir -p "$STACK" "$KAFKA_LOGS"
    (
        exec 8>"$STACK/services.lock"
        flock -w 600 8 || die "stack/services.sh has held .stack/services.lock for 600s"
        kafka_resolve_libs
    )
}

# Start the selected nodes in the background, then wait for each (a cluster
# node only serves once a quorum of controllers runs).
start_kafka_nodes() {  # start_kafka_nodes single | N...
    local node
    for node in "$@"; do
        if [[ $node == single ]]; then select_single; else select_node "$node"; fi
        resolve_libs
        kafka_launch
    done
    for node in "$@"; do
        if [[ $node == single ]]; then select_single; else select_node "$node"; fi
        kafka_wait
        log "$NODE_NAME: ready on 127.0.0.1:$KAFKA_PORT (pid $(<"$KAFKA_PIDFILE"))"
    done
}

stop_kafka_node() {  # stop_kafka_node single|N [term|kill]
    if [[ $1 == single ]]; then select_single; else select_node "$1"; fi
    local pid
    if [[ ${2:-term} == kill ]] && pid=$(kafka_pid); then
        log "$NODE_NAME: SIGKILL (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
        while is_our_kafka "$pid"; do sleep 0.1; done
        rm -f "$KAFKA_PIDFILE"
        return 0
    fi
    kafka_stop
}

pg_restart() {  # pg_restart fast|immediate
    local mode=${1:-fast} t0
    [[ $mode == fast || $mode == immediate ]] || die "restart pg: mode is fast or immediate, not '$mode'"
    PGBIN=$(pg_bin_dir) || die "postgres: pg_ctl not found"
    pg_running || die "postgres: not running; start it with stack/chaos.sh start pg"
    t0=$(now_ms)
    log "postgres: restarting (-m $mode, pid $(pg_server_pid))"
    as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOGFILE" -m "$mode" -w -t "$WAIT_SECONDS" restart >/dev/null 9>&- \
        || { tail -n 30 "$PG_LOGFILE" >&2 || true; die "postgres: pg_ctl restart failed (log above)"; }
    pg_wait
    log "postgres: restarted in $(since "$t0") (pid $(pg_server_pid))"
}

components() {  # the named components, or the default
    local default=$1; shift
    if [[ $# -eq 0 ]]; then read -ra COMPONENTS <<<"$default"; else COMPONENTS=("$@"); fi
    local c
    for c in "${COMPONENTS[@]}"; do
        [[ $c == pg || $c == kafka || $c == cluster ]] || die "unknown component '$c' (pg, kafka, cluster)"
    done
}

has() { local c; for c in "${COMPONENTS[@]}"; do [[ $c == "$1" ]] && return 0; done; return 1; }

cmd_chaos_start() {
    local t0 nodes=()
    components "pg kafka" "$@"
    t0=$(now_ms)
    lock
    has kafka && nodes+=(single)
    has cluster && nodes+=("${CLUSTER_NODES[@]}")
    if has pg; then
        select_pg
        pg_start
    fi
    [[ ${#nodes[@]} -eq 0 ]] || start_kafka_nodes "${nodes[@]}"
    if has pg; then
        pg_wait
        log "postgres: ready on 127.0.0.1:$PG_PORT (pid $(pg_server_pid))"
    fi
    log "ready in $(since "$t0"): ${COMPONENTS[*]}"
}

cmd_chaos_stop() {
    local n
    components "pg kafka cluster" "$@"
    lock
    if has kafka; then stop_kafka_node single; fi
    if has cluster; then
        # All nodes at once: the last one alone would wait for a quorum that is gone.
        local pid
        for n in "${CLUSTER_NODES[@]}"; do
            select_node "$n"
            if pid=$(kafka_pid); then kill -TERM "$pid" 2>/dev/null || true; fi
        done
        for n in "${CLUSTER_NODES[@]}"; do stop_kafka_node "$n"; done
    fi
    if has pg; then select_pg; pg_stop; fi
}

cmd_chaos_status() {
    local rc=0 n pid
    components "pg kafka cluster" "$@"
    if has pg; then
        select_pg
        if PGBIN=$(pg_bin_dir) && pg_running; then
            log "postgres: running, pid $(pg_server_pid), 127.0.0.1:$PG_PORT"
        else
            log "postgres: not running"; rc=1
        fi
    fi
    local nodes=()
    has kafka && nodes+=(single)
    has cluster && nodes+=("${CLUSTER_NODES[@]}")
    for n in "${nodes[@]}"; do
        if [[ $n == single ]]; then select_single; else select_node "$n"; fi
        if pid=$(kafka_pid); then
            log "$NODE_NAME: running, pid $pid, 127.0.0.1:$KAFKA_PORT"
        else
            log "$NODE_NAME: not running"; rc=1
        fi
    done
    return $rc
}

cmd_restart() {
    lock
    case ${1:-} in
        pg) select_pg; pg_restart "${2:-fast}" ;;
        kafka)
            local t0
            t0=$(now_ms)
            stop_kafka_node single "${2:-term}"
            start_kafka_nodes single
            log "kafka: restarted in $(since "$t0")"
            ;;
        *) die "usage: $0 restart pg [fast|immediate] | restart kafka [term|kill]" ;;
    esac
}

cmd_node() {
    local action=${1:-} n=${2:-}
    lock
    case $action in
        stop) stop_kafka_node "$n" term ;;
        kill) stop_kafka_node "$n" kill ;;
        start) select_node "$n"; start_kafka_nodes "$n" ;;
        *) die "usage: $0 node stop|kill|start 1|2|3" ;;
    esac
}

cmd_endpoints() {
    local n servers=()
    for n in "${CLUSTER_NODES[@]}"; do servers+=("127.0.0.1:$((CLUSTER_PORT_BASE + n))"); done
    printf '{"database_url": "postgresql+asyncpg://%s:%s@127.0.0.1:%d/%s", "kafka": "127.0.0.1:%d", "cluster": "%s"}\n' \
        "$PG_USER" "$PG_PASSWORD" "$CHAOS_PG_PORT" "$PG_DB" "$SINGLE_PORT" "$(IFS=,; printf '%s' "${servers[*]}")"
}

cmd_chaos_clean() {
    cmd_chaos_stop
    select_pg
    if [[ $PG_HOME != "$PG_LINK" && -d $PG_HOME ]]; then rm -rf "$PG_HOME"; fi
    rm -rf "$CHAOS"
    log "removed .stack/chaos"
}

cmd=${1:-}
shift || true
case $cmd in
    start) cmd_chaos_start "$@" ;;
    stop) cmd_chaos_stop "$@" ;;
    status) cmd_chaos_status "$@" ;;
    restart) cmd_restart "$@" ;;
    node) cmd_node "$@" ;;
    endpoints) cmd_endpoints ;;
    clean) cmd_chaos_clean ;;
    *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
