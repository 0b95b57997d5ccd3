"""Writes to the outbox: recording events (inside the caller's transaction) and its housekeeping.

The relay (`outbox/relay.py`) claims and publishes rows; everything else that
changes the table lives here, so each job has one home.
"""
import logging
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core.db import delete_in_batches, in_batches, row_insert
from messaging.contract.events import event_headers
from outbox.metrics import PURGED, REQUEUED
from outbox.models import OutboxEvent, OutboxStatus
from outbox.trigger import outbox_relay_wake_on_commit

logger = logging.getLogger(__name__)


def outbox_event_create(
    *,
    topic: str,
    key: str,
    aggregate_type: str,
    aggregate_id: str,
    event_type: str,
    payload: Mapping[str, Any],
    event_id: uuid.UUID,
    correlation_id: str | None,
) -> OutboxEvent:
    """Record an event to publish; it commits or rolls back with the caller's change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_event_create must run inside the transaction of the change it reports")
    headers = event_headers(event_id=event_id, event_type=event_type, correlation_id=correlation_id)
    event = OutboxEvent(
        event_id=event_id,
        topic=topic,
        key=key,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        event_type=event_type,
        payload=dict(payload),
        headers=headers,
    )
    row_insert(event)
    outbox_relay_wake_on_commit()
    return event


def outbox_rows_requeue(*, ids: list[int]) -> int:
    """Put the given FAILED or REFUSED rows back to PENDING with fresh attempts; return how many.

    The admin's action (an operator may requeue a REFUSED row once its cause
    is gone) and, for FAILED rows only, the periodic requeue job.
    """
    updated = OutboxEvent.objects.filter(id__in=ids, status__in=[OutboxStatus.FAILED, OutboxStatus.REFUSED]).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None
    )
    REQUEUED.inc(updated)
    return updated


def outbox_failed_requeue(*, batch_size: int) -> int:
    """Put every FAILED row back to PENDING with fresh attempts, batch by batch; return how many.

    REFUSED rows stay: the broker refused them for good, so sending them again
    would fail again and keep their orders' later events waiting for ever.
    """
    total = in_batches(
        OutboxEvent.objects.filter(status=OutboxStatus.FAILED),
        batch_size=batch_size,
        apply=lambda ids: outbox_rows_requeue(ids=ids),
    )
    if total:
        logger.warning("requeued failed outbox rows", extra={"event": "resilience", "requeued": total})
    return total


def outbox_published_purge(*, older_than: timedelta, batch_size: int) -> int:
    """Delete PUBLISHED rows older than the retention, one short transaction per batch."""
    cutoff = timezone.now() - older_than
    total = delete_in_batches(
        OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED, published_at__lt=cutoff), batch_size=batch_size
    )
    PURGED.inc(total)
    return total


# The autovacuum_analyze_threshold migration 0002 gives the outbox.
ANALYZE_AFTER_CHANGES = 1000


def outbox_vacuum() -> bool:
    """VACUUM the outbox, and ANALYZE it if ANALYZE_AFTER_CHANGES rows changed since the last; must run outside a transaction.

    Return whether it analyzed. ANALYZE samples 30,000 rows however few
    changed, which every minute on an idle platform with a week's outbox
    cost far more than the VACUUM (README, "Cost per order").
    """
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {table}")
        cursor.execute("SELECT n_mod_since_analyze FROM pg_stat_user_tables WHERE relid = %s::regclass", [table])
        changed = cursor.fetchone()
        if changed is not None and changed[0] < ANALYZE_AFTER_CHANGES:
            return False
        cursor.execute(f"ANALYZE {table}")
    return True


def outbox_events_republish(*, ids: list[int]) -> int:
    """Send PUBLISHED or FAILED rows again, unchanged (same event id, payload and headers); return how many.

    For reconciliation after the broker lost acknowledged events. The row goes
    back to PENDING, so the relay publishes it in its aggregate's order, and
    the consumer's processed-events table makes a second delivery harmless.
    """
    # Not REFUSED rows: the broker would refuse them again; they wait for an
    # operator's requeue (outbox_rows_requeue) once their cause is gone.
    republishable = [OutboxStatus.PUBLISHED, OutboxStatus.FAILED]
    updated = OutboxEvent.objects.filter(id__in=ids, status__in=republishable).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None, published_at=None, last_error=""
    )
    if updated:
        outbox_relay_wake_on_commit()
    return updated
