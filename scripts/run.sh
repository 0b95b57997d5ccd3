#!/usr/bin/env bash
# Start the whole platform on this machine:
#   .venv + requirements, PostgreSQL/Redis/Kafka (tansu), migrations, demo data,
#   periodic tasks, static files, then web + Celery worker + beat + Flower + the
#   order consumer under honcho in the foreground. Ctrl-C stops all of it (and tansu; PostgreSQL and
#   Redis only if this script started them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[run] %s\n' "$*"; }
die() { printf '[run] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"
ensure_secret_key "$ROOT"

export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-ecommerce.settings.local}"
export WEB_PORT="${WEB_PORT:-8000}"
export FLOWER_PORT="${FLOWER_PORT:-5555}"
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
export PYTHONUNBUFFERED=1
# Set again (fresh) just before the processes start; the setup commands below
# must not leave metric files of their own behind in it.
unset PROMETHEUS_MULTIPROC_DIR

HONCHO_PID=""
CLEANED_UP=""
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    [[ -z $CLEANED_UP ]] || return 0
    CLEANED_UP=1
    trap - INT TERM
    if [[ -n $HONCHO_PID ]] && kill -0 "$HONCHO_PID" 2>/dev/null; then
        log "stopping the platform processes"
        kill -TERM "$HONCHO_PID" 2>/dev/null || true
        local i
        # honcho SIGKILLs its processes 5 s after SIGTERM; give it a little longer.
        for ((i = 0; i < 30; i++)); do
            kill -0 "$HONCHO_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$HONCHO_PID" 2>/dev/null || true
        wait "$HONCHO_PID" 2>/dev/null || true
    fi
    log "stopping the services this run started"
    bash "$ROOT/scripts/services.sh" down || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/bootstrap.sh
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
PY="$VIRTUAL_ENV/bin/python"
export PYTHON="$PY"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_busy "$WEB_PORT" && die "port $WEB_PORT is already in use (another run.sh?); set WEB_PORT to use another"
port_busy "$FLOWER_PORT" && die "port $FLOWER_PORT is already in use; set FLOWER_PORT to use another"

bash scripts/services.sh up

log "migrate"
"$PY" manage.py migrate --noinput </dev/null
log "seed_demo"
"$PY" manage.py seed_demo </dev/null
log "setup_schedules"
"$PY" manage.py setup_schedules </dev/null
log "collectstatic"
"$PY" manage.py collectstatic --noinput --verbosity 0 </dev/null

# Shared by gunicorn workers and Celery so /metrics sees all of them.
export PROMETHEUS_MULTIPROC_DIR="$ROOT/.run/prometheus"
rm -rf "$PROMETHEUS_MULTIPROC_DIR"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"

WEB="http://127.0.0.1:$WEB_PORT"
cat <<EOF

  E-commerce platform (settings: $DJANGO_SETTINGS_MODULE)
    API        $WEB/api/v1/
    API docs   $WEB/api/docs
    Admin      $WEB/admin/
    Metrics    $WEB/metrics
    Health     $WEB/health/ready
    Flower     http://127.0.0.1:$FLOWER_PORT/
    Kafka      $KAFKA_BOOTSTRAP_SERVERS

  Demo manager login (API and admin): manager / manager123

  Press Ctrl-C to stop everything.

EOF

# In the background so this shell can forward SIGTERM and clean up; honcho
# itself handles Ctrl-C (SIGINT reaches the whole foreground process group).
# `--env /dev/null`: .env has already been applied above without overriding
# the process environment (honcho's own .env loading would override it).
"$PY" -m honcho --env /dev/null start -f Procfile &
HONCHO_PID=$!
rc=0
wait "$HONCHO_PID" || rc=$?
HONCHO_PID=""
exit "$rc"
