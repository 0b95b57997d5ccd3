#!/usr/bin/env bash
# Start the whole platform on this machine:
#   .venv + requirements, PostgreSQL/Redis/Kafka (tansu), migrations, demo data,
#   periodic tasks, static files, then the fake payment provider + web + Celery
#   worker + beat + Flower + the order consumer + Prometheus + Alertmanager under
#   supervisord in the foreground (ops/supervisor/), waiting for the payment
#   provider's /health before it reports the platform ready. A process that dies is restarted (logged and
#   counted in platform_process_restarts_total); logs are in .run/logs/.
#   Ctrl-C or SIGTERM stops all of it (and tansu; PostgreSQL and Redis only if
#   this script started them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[run] %s\n' "$*"; }
die() { printf '[run] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"
ensure_secret_key "$ROOT"

platform_defaults
export PLATFORM_ROOT="$ROOT"
export RUN_DIR="$ROOT/.run"
export PYTHONUNBUFFERED=1
# Set again (fresh) just before the processes start; the setup commands below
# must not leave metric files of their own behind in it.
unset PROMETHEUS_MULTIPROC_DIR

SUPERVISOR_PID=""
CLEANED_UP=""
# supervisord stops each program within its stopwaitsecs (30 s at most) and
# SIGKILLs what remains; this is only the backstop should supervisord hang.
STOP_SECONDS=60
# shellcheck disable=SC2317 # invoked through the EXIT trap
cleanup() {
    [[ -z $CLEANED_UP ]] || return 0
    CLEANED_UP=1
    trap - INT TERM
    if [[ -n $SUPERVISOR_PID ]] && kill -0 "$SUPERVISOR_PID" 2>/dev/null; then
        log "stopping the platform processes"
        kill -TERM "$SUPERVISOR_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < STOP_SECONDS * 2; i++)); do
            kill -0 "$SUPERVISOR_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$SUPERVISOR_PID" 2>/dev/null; then
            log "supervisord did not stop within $STOP_SECONDS s; killing it and its process groups"
            local child
            # Each program runs in a process group of its own, led by the program's pid.
            for child in $(ps -o pid= --ppid "$SUPERVISOR_PID" 2>/dev/null); do
                kill -KILL -- "-$child" 2>/dev/null || kill -KILL "$child" 2>/dev/null || true
            done
            kill -KILL "$SUPERVISOR_PID" 2>/dev/null || true
        fi
        wait "$SUPERVISOR_PID" 2>/dev/null || true
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
port_busy "$PROMETHEUS_PORT" && die "port $PROMETHEUS_PORT is already in use; set PROMETHEUS_PORT to use another"
port_busy "$ALERTMANAGER_PORT" && die "port $ALERTMANAGER_PORT is already in use; set ALERTMANAGER_PORT to use another"
port_busy "$PAYMENT_PROVIDER_PORT" \
    && die "port $PAYMENT_PROVIDER_PORT is already in use; set PAYMENT_PROVIDER_PORT to use another"

# Prometheus and Alertmanager from Debian's packages (installed when missing).
debian_ensure prometheus prometheus || die "Prometheus is needed (Debian package: prometheus)"
debian_ensure prometheus-alertmanager prometheus-alertmanager \
    || die "Alertmanager is needed (Debian package: prometheus-alertmanager)"
export PROMETHEUS_BIN ALERTMANAGER_BIN
PROMETHEUS_BIN="$(command -v prometheus)"
ALERTMANAGER_BIN="$(command -v prometheus-alertmanager)"

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
mkdir -p "$PROMETHEUS_MULTIPROC_DIR" "$RUN_DIR/logs" "$RUN_DIR/prometheus-data" "$RUN_DIR/alertmanager-data"
sed -e "s|@ROOT@|$ROOT|g" -e "s|@WEB_PORT@|$WEB_PORT|g" -e "s|@PROMETHEUS_PORT@|$PROMETHEUS_PORT|g" \
    -e "s|@ALERTMANAGER_PORT@|$ALERTMANAGER_PORT|g" ops/prometheus/prometheus.local.yml >"$RUN_DIR/prometheus.yml"

WEB="http://127.0.0.1:$WEB_PORT"
cat <<EOF

  E-commerce platform (settings: $DJANGO_SETTINGS_MODULE)
    API        $WEB/api/v1/
    API docs   $WEB/api/docs
    Admin      $WEB/admin/
    Metrics    $WEB/metrics
    Health     $WEB/health/ready
    Flower     http://127.0.0.1:$FLOWER_PORT/
    Prometheus http://127.0.0.1:$PROMETHEUS_PORT/classic/alerts
    Alertmanager http://127.0.0.1:$ALERTMANAGER_PORT/
    Kafka      $KAFKA_BOOTSTRAP_SERVERS
    Payments   $PAYMENT_PROVIDER_URL (the fake provider; faults: manage.py payment_faults)

  Demo manager login (API and admin): manager / manager123
  Process logs: .run/logs/<process>.log; supervisor: .run/supervisord.log
  Processes: .venv/bin/supervisorctl -s unix://.run/supervisor.sock status

  Press Ctrl-C to stop everything.

EOF

# In the background so this shell can forward SIGTERM and clean up.
# supervisord handles Ctrl-C itself (SIGINT reaches the whole foreground
# process group; it sets its own handler) and stops every program, each in a
# process group of its own, so the programs see only supervisord's SIGTERM.
"$PY" -m supervisor.supervisord -c ops/supervisor/supervisord.conf &
SUPERVISOR_PID=$!
# The provider's health check: payments before it answers would only be left in doubt, so say when it is up.
PROVIDER_HEALTH_SECONDS=30
provider_healthy() {
    "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=1)' \
        "http://127.0.0.1:$PAYMENT_PROVIDER_PORT" 2>/dev/null
}
for ((i = 0; i < PROVIDER_HEALTH_SECONDS * 4; i++)); do
    provider_healthy && break
    kill -0 "$SUPERVISOR_PID" 2>/dev/null || break
    sleep 0.25
done
provider_healthy || die "the payment provider did not answer /health within $PROVIDER_HEALTH_SECONDS s (.run/logs/payment_provider.log)"
log "payment provider healthy at http://127.0.0.1:$PAYMENT_PROVIDER_PORT"
rc=0
wait "$SUPERVISOR_PID" || rc=$?
SUPERVISOR_PID=""
exit "$rc"
