"""States the overview tests put the platform in, written as the platform's own code leaves them.

Ages are set with `update()`, which skips `auto_now`: an order or a row that
has sat still for a while looks exactly like this in the database.
"""
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import redis
from django.conf import settings
from django.utils import timezone

from celery_app import BEAT_STARTED_KEY, JOB_SUCCESS_KEY, beat_start_record, job_success_record
from deadletters.models import DeadLetter
from orders.models import Order
from outbox.models import OutboxEvent, OutboxStatus
from tests.support import outbox_test_event


def order_aged(status: str, *, age: timedelta) -> Order:
    """An order in `status`, created and last changed `age` ago."""
    created = Order.objects.create(
        order_number=f"ORD-TEST-{uuid.uuid4().hex[:10].upper()}",
        customer_name="Ada Lovelace",
        customer_email="ada@example.com",
        customer_phone="+15551234567",
        shipping_address={"city": "London"},
        subtotal=Decimal("19.99"),
        status=status,
    )
    moment = timezone.now() - age
    Order.objects.filter(pk=created.pk).update(created_at=moment, updated_at=moment)
    created.refresh_from_db()
    return created


def outbox_row(
    status: str, *, created_at: datetime | None = None, published_at: datetime | None = None
) -> OutboxEvent:
    """An outbox row written by the outbox service, then moved to `status` as the relay would."""
    row = outbox_test_event(f"{status.lower()}-{uuid.uuid4().hex[:8]}")
    changes: dict = {"status": status}
    if status == OutboxStatus.FAILED:
        changes.update(attempts=5, last_error="KafkaConnectionError: broker unreachable")
    if status == OutboxStatus.REFUSED:
        changes.update(attempts=1, last_error="MessageSizeTooLargeError: message of 2000000 bytes")
    if created_at is not None:
        changes["created_at"] = created_at
    if published_at is not None:
        changes["published_at"] = published_at
    OutboxEvent.objects.filter(pk=row.pk).update(**changes)
    row.refresh_from_db()
    return row


def dead_letter(*, offset: int, resolved: bool = False) -> DeadLetter:
    """A stored dead letter of `orders.created`, as the consumer stores an unparseable message."""
    return DeadLetter.objects.create(
        original_topic="orders.created",
        original_partition=1,
        original_offset=offset,
        consumer_group="order-service-group",
        dead_letter_topic="orders.created.dlq",
        value=b"not json",
        exception_class="json.decoder.JSONDecodeError",
        exception_message="Expecting value: line 1 column 1 (char 0)",
        stack_trace="",
        attempts=1,
        resolved_at=timezone.now() if resolved else None,
    )


def jobs_succeeded(at: dict[str, datetime], *, beat_started: datetime | None = None) -> None:
    """Leave exactly these job successes (task name -> when) on record, as workers record them; no others.

    And beat's start as beat records it, or none (`beat_started` None: never recorded).
    """
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.delete(JOB_SUCCESS_KEY, BEAT_STARTED_KEY)
    finally:
        client.close()
    for task_name, moment in at.items():
        job_success_record(task_name=task_name, at=moment.timestamp())
    if beat_started is not None:
        beat_start_record(at=beat_started.timestamp())
