"""Writes to the outbox: always inside the caller's transaction."""
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from outbox.metrics import REQUEUED
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
    """Put the given FAILED rows back to PENDING with fresh attempts (admin action and requeue job)."""
    updated = OutboxEvent.objects.filter(id__in=ids, status=OutboxStatus.FAILED).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None
    )
    REQUEUED.inc(updated)
    return updated


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    refused: list[str]


def dead_letters_replay(*, ids: list[int]) -> ReplayReport:
    """Send dead letters back to their original topic through the outbox.

    Through the outbox, so the replay is as reliable as any event: it commits
    here and the relay delivers it, with the original key and headers (the
    consumer's processed-events table makes a second replay harmless). A
    value that is not JSON cannot travel through the outbox: fix it first.
    """
    from resilience.dead_letters import ERROR_HEADER_PREFIX
    from resilience.models import DeadLetter

    replayed, refused = 0, []
    with transaction.atomic():
        for letter in DeadLetter.objects.select_for_update().filter(id__in=ids).order_by("id"):
            try:
                payload = json.loads(letter.value)
            except json.JSONDecodeError:
                refused.append(f"#{letter.id}: the value is not JSON; correct it before replaying")
                continue
            headers = {name: value for name, value in letter.headers if not name.startswith(ERROR_HEADER_PREFIX)}
            OutboxEvent.objects.create(
                topic=letter.original_topic,
                key=letter.key or "",
                aggregate_type="dead-letter-replay",
                aggregate_id=letter.key or f"dead-letter-{letter.id}",
                event_type=headers.get("event_type") or _event_type(payload),
                payload=payload,
                headers=headers,
            )
            letter.replayed_at = timezone.now()
            letter.save(update_fields=["replayed_at"])
            replayed += 1
        if replayed:
            outbox_relay_wake_on_commit()
    return ReplayReport(replayed=replayed, refused=refused)


def _event_type(payload: Any) -> str:
    return str(payload.get("eventType", "UNKNOWN")) if isinstance(payload, dict) else "UNKNOWN"


def dead_letters_resolve(*, ids: list[int]) -> int:
    from resilience.models import DeadLetter

    return DeadLetter.objects.filter(id__in=ids, resolved_at__isnull=True).update(resolved_at=timezone.now())


def outbox_events_republish(*, ids: list[int]) -> int:
    """Send PUBLISHED or FAILED rows again, unchanged (same event id, payload and headers); return how many.

    For reconciliation after the broker lost acknowledged events. The row goes
    back to PENDING, so the relay publishes it in its aggregate's order, and
    the consumer's processed-events table makes a second delivery harmless.
    """
    updated = OutboxEvent.objects.filter(id__in=ids, status__in=[OutboxStatus.PUBLISHED, OutboxStatus.FAILED]).update(
        status=OutboxStatus.PENDING, attempts=0, next_attempt_at=None, published_at=None, last_error=""
    )
    if updated:
        outbox_relay_wake_on_commit()
    return updated
