#!/usr/bin/env bash
# Run the test suite: .venv + requirements, the backing services, the alert
# rules' promtool checks, then pytest.
#   scripts/test.sh [pytest args...]
# Exits with pytest's code (or promtool's when pytest passed); "no tests
# collected" (pytest exit 5) is a failure. Installs Debian's `prometheus`
# package for promtool when it is missing.
# Services are left running afterwards unless STOP_SERVICES=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[test] %s\n' "$*"; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
load_dotenv "$ROOT"

# The services that services.sh ensures below (the settings' defaults). Exported
# so the suite uses them as given rather than provisioning its own
# (tests/services.py starts testcontainers only for URLs missing here).
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ecommerce}"
# The suite's Redis databases are named once, in ecommerce/settings/test.py
# (TEST_REDIS_URL, TEST_CELERY_BROKER_URL); services.sh only needs their server up.
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
# A broker of the suite's own too: tests publish test events to orders.created,
# which a running platform's consumer (on 9092) must never see.
export KAFKA_PORT="${TEST_KAFKA_PORT:-9093}"
export KAFKA_BOOTSTRAP_SERVERS="${TEST_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
export PYTHONUNBUFFERED=1

if [[ ${STOP_SERVICES:-0} == 1 ]]; then
    trap 'bash "$ROOT/scripts/services.sh" down || true' EXIT
fi

bash scripts/bootstrap.sh
PY="$ROOT/.venv/bin/python"
PYTHON="$PY" bash scripts/services.sh up

# The alert rules and their unit tests (ops/prometheus), before pytest; a
# failure here fails the run, but pytest still runs (it reports it too).
rules_rc=0
debian_ensure promtool prometheus || exit 1
# The admin overview's browser test drives Debian's Chromium through its chromedriver.
debian_ensure chromium chromium || exit 1
debian_ensure chromedriver chromium-driver || exit 1
log "promtool check rules + test rules (ops/prometheus)"
promtool check rules ops/prometheus/alerts.yml || rules_rc=$?
promtool test rules ops/prometheus/tests/*.yml || rules_rc=$?
[[ $rules_rc -eq 0 ]] || log "FAILED: promtool (alert rules or their tests)"

# Parallel by default: most of the suite's time is spent waiting for real
# faults to heal (a broker paused, a breaker open, a worker restarted), not on
# the CPU, so pytest-xdist workers overlap those waits even on 2 cores. 4, not
# 6: six were a little faster on a quiet machine but starved the tests that
# time a fault in fractions of a second (a breaker's slow-call threshold, a
# scrape's one-second Kafka budget), which then failed now and then. Each worker has its own database, redis-server and broker. An `-n`
# given to this command wins (the last one counts); TEST_WORKERS=0 runs serially.
# --dist worksteal: the slow fault tests cluster in a few files, and with the
# default chunking one worker was left running them alone for the last minute.
WORKERS="${TEST_WORKERS:-4}"
log "pytest -n $WORKERS $*"
rc=0
DJANGO_SETTINGS_MODULE=ecommerce.settings.test "$PY" -m pytest -n "$WORKERS" --dist worksteal "$@" </dev/null || rc=$?
if [[ $rc -eq 5 ]]; then
    log "FAILED: pytest collected no tests (exit 5); treating that as a failure"
    exit 1
fi
[[ $rc -ne 0 ]] || rc=$rules_rc
exit "$rc"
