"""The health check before a reused connection's first use (core/postgresql/base.py).

A healthy connection is used without asking the server (no `SELECT 1` per
request); one the server ended is found out and replaced before the
request's first statement, so the request does not fail on it.
"""
import pytest
from django.db import close_old_connections, connection

from tests.support import other_session, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _last_statement(pid: int) -> str:
    with other_session() as cursor:
        cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0]


def test_a_healthy_connection_is_reused_without_a_round_trip() -> None:
    pid = _backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the request before'")
    close_old_connections()  # the end of that request: the next one's first use is checked

    connection.cursor().close()  # the next request's first use: the health check runs, no statement of ours

    assert connection.health_check_done
    assert _last_statement(pid) == "SELECT 'the request before'"  # Django's check would have sent SELECT 1


def test_a_connection_the_server_ended_is_replaced_before_the_next_request_uses_it() -> None:
    pid = _backend_pid()
    close_old_connections()
    with other_session() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert cursor.fetchone()[0]

    def gone() -> bool:
        with other_session() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            return cursor.fetchone()[0] == 0

    wait_for(gone, timeout=5, what=f"backend {pid} to end")

    assert _backend_pid() != pid  # the first statement ran, on a new connection
