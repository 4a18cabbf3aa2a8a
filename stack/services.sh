#!/usr/bin/env bash
# Local services for tests and the demo: a real Apache Kafka broker (KRaft,
# combined broker+controller) and a real PostgreSQL server, on 127.0.0.1 only.
#
#   stack/services.sh start    start what is not running yet, wait until ready
#   stack/services.sh stop     stop both (idempotent)
#   stack/services.sh status   print what runs; exit 0 only when both run
#   stack/services.sh clean    stop both and delete all their state
#
# When KAFKA_BROKER (or DATABASE_URL) is set in the environment, that service
# is not started here: `start` only waits until it accepts TCP connections.
#
# Everything is written under .stack/ (git-ignored).  When run as root, the
# PostgreSQL cluster must belong to the `postgres` OS user, which may not be
# able to traverse the checkout's path (e.g. a mktemp dir); its files then
# live in /var/tmp/streamproc-pg-<hash of the checkout path> and
# .stack/postgres is a symlink to it.  Deleting .stack/postgres (or .stack)
# deletes that cluster on the next start.
#
# stack/chaos.sh sources this file (the commands below run only when it is
# executed) and points the KAFKA_* / PG_* variables at other nodes: one
# function set drives the dev stack and the chaos stacks alike.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STACK=$ROOT/.stack

KAFKA_HOME=$STACK/kafka
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_DATA=$KAFKA_HOME/data
KAFKA_LOGS=$KAFKA_HOME/logs
KAFKA_CONF=$KAFKA_HOME/server.properties
KAFKA_PIDFILE=$KAFKA_HOME/kafka.pid
KAFKA_CLUSTER_ID_FILE=$KAFKA_HOME/cluster.id
KAFKA_POM=$ROOT/stack/kafka/pom.xml
KAFKA_LOG4J=$ROOT/stack/kafka/log4j2.xml
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_HEAP_OPTS=${STACK_KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
# Cluster shape (a single combined node unless a caller sets these).
KAFKA_NODE_ID=1
KAFKA_VOTERS=
KAFKA_RF=1
KAFKA_MIN_ISR=1

PG_PORT=5433
PG_USER=streamproc
PG_PASSWORD=streamproc
PG_DB=streamproc
if [[ $EUID -eq 0 ]]; then
    PG_HOME=/var/tmp/streamproc-pg-$(printf '%s' "$ROOT" | sha1sum | cut -c1-12)
else
    PG_HOME=$STACK/postgres
fi
PG_LINK=$STACK/postgres
PG_DATA=$PG_HOME/data
PG_LOGFILE=$PG_HOME/log/postgres.log
PG_EXTRA_CONF=

LOG_TAG=services
LOCK_FILE=$STACK/services.lock

PYTHON=${STACK_PYTHON:-$ROOT/.venv/bin/python}
WAIT_SECONDS=${STACK_WAIT_SECONDS:-90}

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }
rel() { printf '%s' "${1#"$ROOT"/}"; }  # a path relative to the checkout, for messages

now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((d / 1000)) $(((d % 1000) / 100)); }

# port_open HOST PORT: does something accept TCP connections there?
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

port_owner() {  # best effort: "pid/name" of the process listening on a port
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 || true
}

APT_UPDATED=
apt_install() {  # apt_install PACKAGE...: install with apt-get, or say how to
    if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing packages: $*; install them with: sudo apt-get update && sudo apt-get install -y $*"
    fi
    log "installing $* with apt-get"
    if [[ -z $APT_UPDATED ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# host:port pairs (one a line) out of a URL such as kafka://h1:9092;h2:9092,
# postgresql+asyncpg://user:pw@host:5433/db or [::1]:9092.
url_endpoints() {  # url_endpoints URL DEFAULT_PORT [SPLIT]
    local url=$1 default_port=$2 split=${3:-} item host port
    local -a items
    if [[ -n $split ]]; then IFS=',;' read -ra items <<<"$url"; else items=("$url"); fi
    for item in "${items[@]}"; do
        item=${item//[[:space:]]/}
        [[ -n $item ]] || continue
        item=${item#*://}
        item=${item##*@}
        item=${item%%/*}
        item=${item%%\?*}
        if [[ $item == \[* ]]; then
            host=${item%%]*}; host=${host#[}
            port=${item#*]}; port=${port#:}
        elif [[ $item == *:* ]]; then
            host=${item%:*}; port=${item##*:}
        else
            host=$item; port=
        fi
        printf '%s %s\n' "${host:-127.0.0.1}" "${port:-$default_port}"
    done
}

# wait_external NAME URL DEFAULT_PORT [SPLIT]: wait until one endpoint accepts.
wait_external() {
    local name=$1 url=$2 t0 host port
    local -a eps
    mapfile -t eps < <(url_endpoints "$url" "$3" "${4:-}")
    [[ ${#eps[@]} -gt 0 ]] || die "$name: cannot find host:port in '$url'"
    log "$name: using the existing service at ${eps[*]/ /:} (from the environment); starting nothing"
    t0=$(now_ms)
    while :; do
        for ep in "${eps[@]}"; do
            read -r host port <<<"$ep"
            if port_open "$host" "$port"; then
                log "$name: $host:$port accepts connections ($(since "$t0"))"
                return 0
            fi
        done
        (( $(now_ms) - t0 < WAIT_SECONDS * 1000 )) \
            || die "$name: nothing accepts connections at ${eps[*]/ /:} after ${WAIT_SECONDS}s (check the URL in the environment)"
        sleep 0.5
    done
}

# ----------------------------------------------------------------- Kafka ----

kafka_version() {
    local jar
    jar=$(ls "$KAFKA_LIBS"/kafka_2.13-*.jar 2>/dev/null | head -n1) || true
    jar=${jar##*/kafka_2.13-}
    printf '%s' "${jar%.jar}"
}

is_our_kafka() {  # is_our_kafka PID
    local cmd
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    [[ $cmd == *kafka.Kafka* && $cmd == *"$KAFKA_CONF"* ]]
}

kafka_pid() {  # print the pid of this checkout's broker; drop stale pid files
    local pid d
    if [[ -f $KAFKA_PIDFILE ]]; then
        pid=$(<"$KAFKA_PIDFILE")
        if is_our_kafka "$pid"; then printf '%s\n' "$pid"; return 0; fi
        log "kafka: removing stale pid file (pid $pid is not this checkout's broker)" >&2
        rm -f "$KAFKA_PIDFILE"
    fi
    for d in /proc/[0-9]*; do  # a broker whose pid file was lost
        pid=${d#/proc/}
        if is_our_kafka "$pid"; then
            printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
            printf '%s\n' "$pid"
            return 0
        fi
    done
    return 1
}

# The java command line for a Kafka main class with our classpath and logging.
kafka_java_cmd() {  # kafka_java_cmd MAIN ARGS...: sets JAVA_CMD
    local -a heap
    read -ra heap <<<"$KAFKA_HEAP_OPTS"
    JAVA_CMD=(java "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$KAFKA_LOGS"
        -cp "$KAFKA_LIBS/*" "$@")
}

kafka_resolve_libs() {
    local want
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
    want=$(sha1sum "$KAFKA_POM" | cut -d' ' -f1)
    if [[ -f $KAFKA_LIBS/.resolved && $(<"$KAFKA_LIBS/.resolved") == "$want" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || apt_install maven
    log "kafka: resolving the broker's jars from Maven Central (stack/kafka/pom.xml)"
    rm -rf "$KAFKA_LIBS.tmp"
    mvn -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >"$KAFKA_LOGS/maven.log" 2>&1 \
        || { tail -n 40 "$KAFKA_LOGS/maven.log" >&2; die "kafka: Maven could not resolve the jars (log above: $(rel "$KAFKA_LOGS")/maven.log)"; }
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    printf '%s\n' "$want" >"$KAFKA_LIBS/.resolved"
}

kafka_write_config() {
    cat >"$KAFKA_CONF.tmp" <<EOF
# Generated by stack/services.sh; edits are overwritten on the next start.
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=${KAFKA_VOTERS:-$KAFKA_NODE_ID@127.0.0.1:$KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=1
auto.create.topics.enable=true
# Single node: replication factor 1 and min ISR 1 for the internal topics, so
# that consumer groups and transactions work (a cluster sets KAFKA_RF/MIN_ISR).
offsets.topic.replication.factor=$KAFKA_RF
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$KAFKA_RF
transaction.state.log.min.isr=$KAFKA_MIN_ISR
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=$KAFKA_RF
share.coordinator.state.topic.min.isr=$KAFKA_MIN_ISR
min.insync.replicas=$KAFKA_MIN_ISR
default.replication.factor=$KAFKA_RF
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
    mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

kafka_format() {
    local cid
    [[ -f $KAFKA_DATA/meta.properties ]] && return 0
    if [[ -f $KAFKA_CLUSTER_ID_FILE ]]; then
        cid=$(<"$KAFKA_CLUSTER_ID_FILE")
    else
        # Kafka's Uuid text form: url-safe base64 of 16 random bytes, no padding.
        cid=$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')
        printf '%s\n' "$cid" >"$KAFKA_CLUSTER_ID_FILE"
    fi
    log "kafka: formatting the log dir (cluster id $cid)"
    rm -rf "$KAFKA_DATA"
    kafka_java_cmd kafka.tools.StorageTool format -t "$cid" -c "$KAFKA_CONF"
    "${JAVA_CMD[@]}" >"$KAFKA_LOGS/format.log" 2>&1 \
        || { cat "$KAFKA_LOGS/format.log" >&2; die "kafka: formatting the storage failed"; }
}

kafka_launch() {  # start the broker in the background unless it runs; sets KAFKA_STARTED
    local pid p
    KAFKA_STARTED=
    if pid=$(kafka_pid); then
        log "kafka: already running (pid $pid)"
        return 0
    fi
    for p in $KAFKA_PORT $KAFKA_CONTROLLER_PORT; do
        if port_open 127.0.0.1 "$p"; then
            die "kafka: port $p on 127.0.0.1 is taken by another process $(port_owner "$p") (not this checkout's broker). Stop it, or set KAFKA_BROKER and DATABASE_URL to use running services."
        fi
    done
    kafka_write_config
    kafka_format
    log "kafka: starting Apache Kafka $(kafka_version) on 127.0.0.1:$KAFKA_PORT (logs: $(rel "$KAFKA_LOGS")/)"
    kafka_java_cmd kafka.Kafka "$KAFKA_CONF"
    (
        cd "$KAFKA_HOME"
        # setsid: leave make's process group, so ^C on make does not kill it.
        # (In this non-leader subshell setsid does not fork: $! is java's pid.)
        exec setsid "${JAVA_CMD[@]}"
    ) </dev/null >>"$KAFKA_LOGS/stdout.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$KAFKA_PIDFILE"
    KAFKA_STARTED=1
}

# A metadata request through aiokafka: the broker is registered and serves.
KAFKA_PROBE='
import asyncio, sys
from aiokafka import AIOKafkaClient
async def main():
    client = AIOKafkaClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    try:
        await client.bootstrap()
        if not client.cluster.brokers():
            sys.exit("no brokers in the metadata")
    finally:
        await client.close()
asyncio.run(main())
'

kafka_wait() {
    local t0 pid
    t0=$(now_ms)
    pid=$(<"$KAFKA_PIDFILE")
    while ! port_open 127.0.0.1 "$KAFKA_PORT"; do
        if ! is_our_kafka "$pid"; then
            tail -n 30 "$KAFKA_LOGS/stdout.log" "$KAFKA_LOGS/server.log" >&2 2>/dev/null || true
            rm -f "$KAFKA_PIDFILE"
            die "kafka: the broker exited during start-up (logs above; all in $(rel "$KAFKA_LOGS")/)"
        fi
        (( $(now_ms) - t0 < WAIT_SECONDS * 1000 )) || die "kafka: not listening after ${WAIT_SECONDS}s; see $(rel "$KAFKA_LOGS")/"
        sleep 0.2
    done
    if [[ -x $PYTHON ]] && "$PYTHON" -c 'import aiokafka' 2>/dev/null; then
        until "$PYTHON" -c "$KAFKA_PROBE" "127.0.0.1:$KAFKA_PORT" 2>/dev/null; do
            (( $(now_ms) - t0 < WAIT_SECONDS * 1000 )) \
                || die "kafka: listening but not answering metadata requests after ${WAIT_SECONDS}s; see $(rel "$KAFKA_LOGS")/"
            sleep 0.5
        done
    else
        log "kafka: $PYTHON with aiokafka not found (run 'make venv'); checked TCP only"
    fi
}

kafka_stop() {
    local pid i
    if ! pid=$(kafka_pid); then
        log "kafka: not running"
        return 0
    fi
    log "kafka: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do  # up to 60 s for a controlled shutdown
        is_our_kafka "$pid" || break
        sleep 0.1
    done
    if is_our_kafka "$pid"; then
        log "kafka: still running after 60s, killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$KAFKA_PIDFILE"
    log "kafka: stopped"
}

# ------------------------------------------------------------ PostgreSQL ----

as_pg() {  # run as the cluster's owner (initdb and pg_ctl refuse root)
    # From /: the postgres user may not be allowed into the current directory.
    if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_bin_dir() {  # the server binaries; the data dir's major version if it has one
    local d ver=
    [[ -f $PG_DATA/PG_VERSION ]] && ver=$(<"$PG_DATA/PG_VERSION")
    if [[ -n $ver && -x /usr/lib/postgresql/$ver/bin/pg_ctl ]]; then
        printf '%s\n' "/usr/lib/postgresql/$ver/bin"; return 0
    fi
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
        if [[ -x $d/initdb && -x $d/pg_ctl ]]; then printf '%s\n' "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"; return 0
    fi
    return 1
}

pg_running() { [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_server_pid() { head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

# When the cluster lives outside .stack, .stack/postgres (a symlink) says it
# belongs to this checkout; without the link it counts as deleted.
pg_claim_home() {
    if [[ $PG_HOME == "$PG_LINK" ]]; then
        mkdir -p "$PG_HOME"
        return 0
    fi
    if [[ -e $PG_LINK && ! -L $PG_LINK ]]; then
        die "postgres: $PG_LINK is a directory, but as root the cluster lives in $PG_HOME; remove $PG_LINK (it holds an old cluster)"
    fi
    if [[ ! -L $PG_LINK && -d $PG_HOME ]]; then
        log "postgres: $(rel "$PG_LINK") was deleted; removing its old cluster in $PG_HOME"
        if [[ -f $PG_DATA/PG_VERSION ]] && pg_running; then
            as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w stop >/dev/null
        fi
        rm -rf "$PG_HOME"
    fi
    id -u postgres >/dev/null 2>&1 \
        || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    mkdir -p "$PG_HOME"
    chown postgres: "$PG_HOME"
    chmod 700 "$PG_HOME"
    ln -sfn "$PG_HOME" "$PG_LINK"
}

pg_init() {
    local tmp=$PG_HOME/data.tmp pwfile=$PG_HOME/.pwfile
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    log "postgres: creating a cluster with initdb in $(rel "$PG_LINK")/data"
    as_pg rm -rf "$tmp" "$PG_DATA"
    as_pg sh -c 'umask 077 && printf "%s\n" "$1" >"$2"' _ "$PG_PASSWORD" "$pwfile"
    as_pg "$PGBIN/initdb" -D "$tmp" -U "$PG_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-instructions \
        >"$PG_HOME/log/initdb.log" 2>&1 \
        || { cat "$PG_HOME/log/initdb.log" >&2; die "postgres: initdb failed"; }
    as_pg rm -f "$pwfile"
    as_pg sh -c 'cat >>"$1"' _ "$tmp/postgresql.conf" <<EOF

# --- added by stack/services.sh ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_HOME/run'
max_connections = 200
password_encryption = scram-sha-256
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
${PG_EXTRA_CONF}
EOF
    as_pg mv "$tmp" "$PG_DATA"
}

pg_start() {  # sets PG_STARTED
    PG_STARTED=
    PGBIN=$(pg_bin_dir) || { apt_install postgresql; PGBIN=$(pg_bin_dir) || die "postgres: no initdb/pg_ctl after installing postgresql"; }
    pg_claim_home
    if [[ $EUID -eq 0 ]]; then
        install -d -o postgres -g postgres -m 700 "$PG_HOME/log" "$PG_HOME/run"
    else
        mkdir -p "$PG_HOME/log" "$PG_HOME/run"
    fi
    pg_init
    if pg_running; then
        log "postgres: already running (pid $(pg_server_pid))"
    else
        if port_open 127.0.0.1 "$PG_PORT"; then
            die "postgres: port $PG_PORT on 127.0.0.1 is taken by another process $(port_owner "$PG_PORT") (not this checkout's server). Stop it, or set KAFKA_BROKER and DATABASE_URL to use running services."
        fi
        log "postgres: starting PostgreSQL $(<"$PG_DATA/PG_VERSION") on 127.0.0.1:$PG_PORT (log: $(rel "$PG_LINK")/log/postgres.log)"
        as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOGFILE" -w -t "$WAIT_SECONDS" start >/dev/null 9>&- \
            || { tail -n 30 "$PG_LOGFILE" >&2 || true; die "postgres: pg_ctl start failed (log above)"; }
        PG_STARTED=1
    fi
}

pg_wait() {
    local t0 psql=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER")
    t0=$(now_ms)
    until "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
        (( $(now_ms) - t0 < WAIT_SECONDS * 1000 )) || die "postgres: not ready after ${WAIT_SECONDS}s; see $(rel "$PG_LINK")/log/postgres.log"
        sleep 0.2
    done
    export PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5
    if [[ -z $("${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ]]; then
        log "postgres: creating database $PG_DB"
        "${psql[@]}" -d postgres -c "CREATE DATABASE $PG_DB"
    fi
    "${psql[@]}" -d "$PG_DB" -tAc 'SELECT 1' >/dev/null || die "postgres: cannot log in as $PG_USER to $PG_DB"
}

pg_stop() {
    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "postgres: not running (no cluster)"
        return 0
    fi
    PGBIN=$(pg_bin_dir) || die "postgres: pg_ctl not found"
    if ! pg_running; then
        log "postgres: not running"
        return 0
    fi
    log "postgres: stopping (pid $(pg_server_pid))"
    as_pg "$PGBIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null
    log "postgres: stopped"
}

# -------------------------------------------------------------- commands ----

lock() {  # one start/stop at a time per checkout (the servers must not inherit fd 9)
    mkdir -p "${LOCK_FILE%/*}"
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "another $LOG_TAG start/stop has held $(rel "$LOCK_FILE") for 300s"
}

cmd_start() {
    local t0 summary=()
    t0=$(now_ms)
    lock
    KAFKA_STARTED= PG_STARTED=
    if [[ -z ${KAFKA_BROKER:-} ]]; then
        mkdir -p "$KAFKA_HOME" "$KAFKA_LOGS"
        kafka_resolve_libs
        kafka_launch  # in the background; PostgreSQL starts meanwhile
    fi
    if [[ -z ${DATABASE_URL:-} ]]; then
        pg_start
    fi
    if [[ -n ${KAFKA_BROKER:-} ]]; then
        wait_external kafka "$KAFKA_BROKER" 9092 split
        summary+=("kafka $KAFKA_BROKER (external)")
    else
        kafka_wait
        summary+=("kafka 127.0.0.1:$KAFKA_PORT (Apache Kafka $(kafka_version), pid $(<"$KAFKA_PIDFILE")$([[ -n $KAFKA_STARTED ]] && echo ', started' || echo ', reused'))")
    fi
    if [[ -n ${DATABASE_URL:-} ]]; then
        wait_external postgres "$DATABASE_URL" 5432
        summary+=("postgres ${DATABASE_URL%%://*}://…@$(url_endpoints "$DATABASE_URL" 5432 | tr ' ' ':') (external)")
    else
        pg_wait
        summary+=("postgres 127.0.0.1:$PG_PORT (PostgreSQL $(<"$PG_DATA/PG_VERSION"), pid $(pg_server_pid)$([[ -n $PG_STARTED ]] && echo ', started' || echo ', reused'))")
    fi
    log "ready in $(since "$t0"): ${summary[0]}; ${summary[1]}"
}

cmd_stop() {
    local t0
    t0=$(now_ms)
    lock
    kafka_stop
    pg_stop
    log "stopped in $(since "$t0")"
}

cmd_status() {
    local rc=0 pid
    if pid=$(kafka_pid); then
        log "kafka: running, pid $pid, 127.0.0.1:$KAFKA_PORT (Apache Kafka $(kafka_version))"
    else
        log "kafka: not running"; rc=1
    fi
    if PGBIN=$(pg_bin_dir) && pg_running; then
        log "postgres: running, pid $(pg_server_pid), 127.0.0.1:$PG_PORT (PostgreSQL $(<"$PG_DATA/PG_VERSION"))"
    else
        log "postgres: not running"; rc=1
    fi
    [[ -z ${KAFKA_BROKER:-} ]] || log "note: KAFKA_BROKER is set ($KAFKA_BROKER); make uses that broker"
    [[ -z ${DATABASE_URL:-} ]] || log "note: DATABASE_URL is set; make uses that database"
    return $rc
}

cmd_clean() {
    cmd_stop
    if [[ $PG_HOME != "$PG_LINK" && -d $PG_HOME ]]; then
        rm -rf "$PG_HOME"
    fi
    rm -rf "$STACK"
    log "removed .stack"
}

# Sourced (by stack/chaos.sh): define the functions only.
[[ ${BASH_SOURCE[0]} == "$0" ]] || return 0

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    *) echo "usage: $0 start|stop|status|clean" >&2; exit 2 ;;
esac
