"""A database session cannot hold its locks for ever: idle-in-transaction and statement time-outs, TCP keepalives.

A relay holds its rows' locks across the Kafka send. One whose process
freezes, or whose host vanishes, must not keep those orders' events locked
until the kernel gives up on the socket (about two hours): PostgreSQL ends a
session left idle inside a transaction, and probes a silent peer.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import OperationalError, connection, transaction

from outbox.models import OutboxEvent, OutboxStatus
from tests.support import ROOT, database_url_for_tests, outbox_test_event

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_LOCK = """
import sys, time, django
django.setup()
from django.db import transaction
from outbox.models import OutboxEvent
with transaction.atomic():
    locked = list(OutboxEvent.objects.select_for_update().filter(id=int(sys.argv[1])).values_list("id", flat=True))
    print("locked", locked, flush=True)
    time.sleep(3600)
"""

SESSION = """
import json, socket, django
django.setup()
from django.db import connection
names = ["statement_timeout", "idle_in_transaction_session_timeout", "tcp_keepalives_idle",
         "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"]
with connection.cursor() as cursor:
    server = {}
    for name in names:
        cursor.execute("SELECT current_setting(%s)", [name])
        server[name] = cursor.fetchone()[0]
client = socket.socket(fileno=connection.connection.fileno())
try:
    options = {
        "SO_KEEPALIVE": client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "TCP_KEEPIDLE": client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "TCP_KEEPINTVL": client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "TCP_KEEPCNT": client.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "TCP_USER_TIMEOUT": client.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }
finally:
    client.detach()  # the socket is psycopg2's
print(json.dumps({"server": server, "client": options}))
"""


def platform_settings_env(**overrides: str) -> dict[str, str]:
    """The run command's settings (ecommerce.settings.local, over base) on the test database, no .env."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "ecommerce.settings.local",
        "DJANGO_READ_DOTENV": "false",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DATABASE_URL": database_url_for_tests(),
        **overrides,
    }


def row_is_locked(row_id: int) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {OutboxEvent._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT", [row_id])
        return False
    except OperationalError as error:
        assert "could not obtain lock" in str(error)
        return True


def test_a_frozen_process_holding_row_locks_loses_them_within_its_idle_in_transaction_timeout():
    # Given: a process of the platform's settings (a 2 s idle-in-transaction
    # time-out instead of 30, for the test's sake) holding an outbox row's lock
    row = outbox_test_event("frozen-relay")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(row.id)],
        cwd=ROOT,
        env=platform_settings_env(DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS="2000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == f"locked [{row.id}]"
        # When: it freezes while holding the lock (SIGSTOP: no FIN, no RST, no next statement)
        holder.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        assert row_is_locked(row.id)

        # Then: PostgreSQL ends its session and the lock is free within the time-out (and some slack)
        while row_is_locked(row.id) and time.monotonic() - frozen_at < 15:
            time.sleep(0.2)
        freed_after = time.monotonic() - frozen_at
        assert freed_after < 8, f"the frozen session still held the lock after {freed_after:.1f}s"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)  # nothing lost: the next relay publishes it


def test_platform_sessions_have_time_outs_and_keepalives_on_both_ends_by_default():
    completed = subprocess.run(
        [sys.executable, "-c", SESSION],
        cwd=ROOT, env=platform_settings_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    session = json.loads(completed.stdout.strip().splitlines()[-1])
    assert session["server"] == {
        "statement_timeout": "15s",
        "idle_in_transaction_session_timeout": "30s",
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": "25000",  # milliseconds
    }
    assert session["client"] == {
        "SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 25000,
    }  # fmt: skip


def test_the_suite_keeps_no_idle_in_transaction_timeout():
    # pytest-django wraps a test in a transaction that stays open, idle, while
    # the test waits for other processes (a consumer, a worker): for a minute at times.
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('idle_in_transaction_session_timeout')")
        assert cursor.fetchone() == ("0",)
