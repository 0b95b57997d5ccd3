"""The outbox's vacuum job: VACUUM every run, ANALYZE only once enough rows changed (outbox_vacuum)."""
import uuid

import pytest
from django.db import connection

from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import ANALYZE_AFTER_CHANGES, outbox_vacuum
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)  # VACUUM cannot run in a transaction

TABLE = OutboxEvent._meta.db_table


def _changes_since_analyze() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = %s::regclass", [TABLE])
        return cursor.fetchone()[0]


@pytest.fixture
def autovacuum_off():
    """The server the job is for: autovacuum would otherwise analyze the table on its own, at the same threshold."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} SET (autovacuum_enabled = false)")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE} RESET (autovacuum_enabled)")


def test_an_unchanged_outbox_is_vacuumed_not_analyzed_and_a_changed_one_is_analyzed(autovacuum_off):
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
    assert outbox_vacuum() is False  # nothing changed: an idle platform's every minute

    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            event_id=uuid.uuid4(), aggregate_type="order", aggregate_id=str(index), topic="orders.created", key=str(index),
            event_type="TEST_EVENT", payload={}, headers={}, status=OutboxStatus.PUBLISHED,
        )
        for index in range(ANALYZE_AFTER_CHANGES)
    )
    # A backend reports its counts to the shared statistics within seconds, not at once.
    wait_for(lambda: _changes_since_analyze() >= ANALYZE_AFTER_CHANGES, timeout=30, what="the inserts counted")
    assert outbox_vacuum() is True
    wait_for(lambda: _changes_since_analyze() == 0, timeout=30, what="the analyze recorded")
    assert outbox_vacuum() is False


def test_analyze_samples_the_planned_columns_and_skips_the_event_bodies():
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            event_id=uuid.uuid4(), aggregate_type="order", aggregate_id=str(index), topic="orders.created", key=str(index),
            event_type="TEST_EVENT", payload={"n": index}, headers={"h": str(index)}, status=OutboxStatus.PENDING,
        )
        for index in range(100)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
        cursor.execute("SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = %s", [TABLE])
        analyzed = {name for (name,) in cursor.fetchall()}
    # The claim, the purge, the requeue and reconciliation filter on these.
    planned = {"id", "aggregate_type", "aggregate_id", "status", "next_attempt_at", "created_at", "published_at", "event_type"}
    assert planned <= analyzed
    assert analyzed.isdisjoint({"payload", "headers", "key", "event_id", "topic", "last_error", "attempts"})
