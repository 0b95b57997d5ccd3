"""Writes to the outbox: always inside the caller's transaction."""
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from outbox.models import OutboxEvent, OutboxStatus
from outbox.trigger import outbox_relay_wake_on_commit


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
    headers = {"event_id": str(event_id), "event_type": event_type, "correlation_id": correlation_id or ""}
    event = OutboxEvent.objects.create(
        event_id=event_id,
        topic=topic,
        key=key,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        event_type=event_type,
        payload=dict(payload),
        headers=headers,
    )
    outbox_relay_wake_on_commit()
    return event


def outbox_rows_requeue(*, ids: list[int]) -> int:
    """Put the given FAILED rows back to PENDING with fresh attempts (admin action)."""
    from outbox.metrics import REQUEUED

    updated = OutboxEvent.objects.filter(id__in=ids, status=OutboxStatus.FAILED).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None
    )
    REQUEUED.inc(updated)
    return updated
