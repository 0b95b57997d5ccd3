"""Apply one `OrderCreated` message: the pure part of the order consumer.

`process_order_created_message` knows nothing of polling, offsets or dead
letters; it either applies the event, recognises it as already applied, or
raises an error whose class tells the consumer loop what to do:

* `PoisonMessage`: the bytes can never be processed (not JSON, refused by the
  event's JSON Schema, unknown type or version; see `messaging.contract.events`):
  dead-letter at once;
* a database connection error (`OperationalError`, `InterfaceError`):
  transient infrastructure, retry without dead-lettering;
* anything else: a processing error, retried a bounded number of times and
  then dead-lettered.

Paying asks the provider once per key (`payments.gateway`). Only its word
settles the order: approved makes it PAID, declined FAILED (its stock given
back). An unknown answer (time-out, reset, 5xx, breaker open) is never a
decline: the order stays PROCESSING, in doubt (`payment_unknown_since`), the
event is recorded as processed, and reconciliation asks the provider for the
charge under the same key (orders/payment_resolution.py). An order cancelled
while its payment was in flight is not paid: its charge is recorded and
refunded. `order_payment_settle` is the one place that records what the
provider said, for the consumer and for reconciliation alike.
"""
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from core.correlation import set_correlation_id
from core.db import columns_sql, delete_in_batches, row_from_db, row_get, row_insert, row_update
from core.planted import SKIP_PROCESSED_EVENT_CHECK, planted
from messaging.contract.events import ORDER_CREATED, InvalidEvent, event_decode, event_validate
from messaging.kafka.consumer import IncomingMessage
from orders.metrics import DUPLICATES, PROCESSED, PROCESSING_SECONDS
from orders.models import (
    Order,
    OrderStatus,
    PaymentMethod,
    PaymentStatus,
    PaymentTransaction,
    ProcessedEvent,
    ProcessedEventOutcome,
)
from orders.services import (
    REFUNDABLE_STATUSES,
    order_fail,
    order_payment_refund,
    order_transition_allowed,
    payment_event_create,
)
from payments.gateway import ChargeOutcome, PaymentResult, payment_charge

logger = logging.getLogger(__name__)

# The event types this consumer applies; the contract knows their versions and schemas.
ACCEPTED_EVENT_TYPES = frozenset({ORDER_CREATED})
REFUND_REASON_IN_FLIGHT = "order {status} while its payment was in flight"


class PoisonMessage(Exception):
    """The message can never be processed as it is."""


class OrderNotFound(Exception):
    """The event names an order this database does not have (yet)."""


class Outcome(str, Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"
    PAYMENT_UNKNOWN = "payment_unknown"  # in doubt: reconciliation asks the provider


@dataclass(frozen=True)
class OrderCreatedEvent:
    event_id: uuid.UUID
    correlation_id: str | None
    order_id: uuid.UUID
    order_number: str
    subtotal: Decimal


def order_created_parse(message: IncomingMessage) -> OrderCreatedEvent:
    """Decode and validate against the contract; raise PoisonMessage for anything that can never work."""
    try:
        payload = event_decode(message.value, event_types=ACCEPTED_EVENT_TYPES)
    except InvalidEvent as error:
        raise PoisonMessage(str(error)) from error
    return _order_created_event(payload)


def order_created_from_payload(payload: Mapping[str, Any]) -> OrderCreatedEvent:
    """Validate a decoded OrderCreated (from Kafka, or its outbox row); raise PoisonMessage if it cannot work."""
    try:
        event_validate(payload, event_types=ACCEPTED_EVENT_TYPES)
    except InvalidEvent as error:
        raise PoisonMessage(str(error)) from error
    return _order_created_event(payload)


def _order_created_event(payload: Mapping[str, Any]) -> OrderCreatedEvent:
    # The schema has vouched for every field's shape (UUIDs, a decimal string), so these conversions cannot fail.
    return OrderCreatedEvent(
        event_id=uuid.UUID(payload["eventId"]),
        correlation_id=payload["correlationId"],
        order_id=uuid.UUID(payload["orderId"]),
        order_number=payload["orderNumber"],
        subtotal=Decimal(payload["subtotal"]),
    )


def _record(event: OrderCreatedEvent, topic: str, outcome: str, detail: str = "") -> None:
    row_insert(ProcessedEvent(event_id=event.event_id, event_type=ORDER_CREATED, topic=topic, outcome=outcome, detail=detail))


def _skip(order: Order, event: OrderCreatedEvent, topic: str, target: str, note: str = "") -> Outcome:
    detail = f"order {order.order_number} is {order.status}; {target} refused{note}"
    _record(event, topic, ProcessedEventOutcome.SKIPPED, detail)
    PROCESSED.labels("skipped").inc()
    logger.warning("illegal transition skipped", extra={"event": "resilience", "order_number": order.order_number, "detail": detail})
    return Outcome.SKIPPED


def _duplicate(event: OrderCreatedEvent) -> Outcome:
    DUPLICATES.inc()
    logger.info("duplicate delivery ignored", extra={"event_id": str(event.event_id), "order_number": event.order_number})
    return Outcome.DUPLICATE


# A first delivery's claim (most deliveries) in one statement, outside any
# transaction: a PENDING order has had no OrderCreated applied (every outcome
# recorded leaves it PROCESSING or later, and none goes back), so no processed
# event needs looking up; the row's lock lasts as long as the statement.
_CLAIM_PENDING = f"""
    UPDATE {Order._meta.db_table}
    SET status = %s, payment_charge_requests = payment_charge_requests + 1, updated_at = %s
    WHERE id = %s AND status = %s
    RETURNING {columns_sql(Order)}
"""


def _claim_pending(event: OrderCreatedEvent) -> Order | None:
    """Make the event's order PROCESSING and count its charge request, if it is PENDING; else None."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_PENDING, [OrderStatus.PROCESSING, timezone.now(), event.order_id, OrderStatus.PENDING])
        row = cursor.fetchone()
    return None if row is None else row_from_db(Order, row)


def _lock_unprocessed(event: OrderCreatedEvent) -> Order | None:
    """Lock the event's order; None if the event was applied already.

    The order's lock comes first: whoever held it before us (another
    consumer, or reconciliation resuming the same order) has committed its
    processed-event record by the time we look for it.
    """
    order = row_get(Order, "id", event.order_id, lock=True)
    if order is not None and order.status == OrderStatus.PENDING:
        # Nothing has applied an OrderCreated to it yet: every outcome recorded
        # leaves its order PROCESSING or later, and none goes back to PENDING.
        return order
    if not planted(SKIP_PROCESSED_EVENT_CHECK) and row_get(ProcessedEvent, "event_id", event.event_id) is not None:
        return None
    if order is None:
        raise OrderNotFound(f"order {event.order_id} ({event.order_number}) does not exist")
    return order


def process_order_created_message(message: IncomingMessage) -> Outcome:
    """Apply an OrderCreated from Kafka once (see order_created_apply)."""
    return order_created_apply(event=order_created_parse(message), topic=message.topic)


def order_created_apply(*, event: OrderCreatedEvent, topic: str) -> Outcome:
    """Apply an OrderCreated once: PROCESSING, pay, then PAID, FAILED or in doubt (see order_payment_settle)."""
    set_correlation_id(event.correlation_id)
    with PROCESSING_SECONDS.time():
        # 1. Claim the order for payment (no transaction left open: the
        #    payment call must not hold the order's lock or a transaction).
        order = _claim_pending(event)
        if order is None:
            with transaction.atomic():
                order = _lock_unprocessed(event)
                if order is None:
                    return _duplicate(event)
                if order.status == OrderStatus.PENDING:  # only an order committed after the claim looked
                    order.status = OrderStatus.PROCESSING
                elif order.status != OrderStatus.PROCESSING:  # PROCESSING: a redelivery after a crash resumes
                    return _skip(order, event, topic, OrderStatus.PROCESSING)
                order.payment_charge_requests += 1
                row_update(order, ["status", "payment_charge_requests", "updated_at"])

        # 2. Pay. The order id is the provider's idempotency key, so a resumed
        #    delivery gets the first answer back instead of a second charge.
        payment = payment_charge(idempotency_key=str(order.id), amount=order.subtotal)

        # 3. Record what the provider said, the event as processed and PaymentCompleted, together.
        return order_payment_settle(order_id=order.id, payment=payment, event=event, topic=topic)


def order_payment_settle(
    *, order_id: uuid.UUID, payment: PaymentResult, event: OrderCreatedEvent | None, topic: str
) -> Outcome:
    """Record the provider's answer about the order's charge, under the order's lock.

    APPROVED: PAID, or, for an order CANCELLED or FAILED meanwhile, the charge
    recorded and refunded once. DECLINED (or the provider's word that there is
    no charge): FAILED with its stock back. UNKNOWN: the order stays as it is,
    in doubt. `event` (the OrderCreated being applied) is recorded as
    processed with the outcome; if it was recorded already, nothing is done.
    """
    with transaction.atomic():
        if event is not None:
            order = _lock_unprocessed(event)
            if order is None:
                return _duplicate(event)  # another consumer (or reconciliation) finished it meanwhile
        else:
            order = Order.objects.select_for_update(of=("self",)).get(id=order_id)
        if payment.outcome is ChargeOutcome.UNKNOWN:
            return _in_doubt(order, payment, event, topic)
        outcome, refund_due = _settle(order, payment, event, topic)
    if refund_due:
        # A failure here leaves a charge without a PAID order: the payment audit refunds it.
        order_payment_refund(order_id=order.id, reason=REFUND_REASON_IN_FLIGHT.format(status=order.status.lower()))
    return outcome


def _in_doubt(order: Order, payment: PaymentResult, event: OrderCreatedEvent | None, topic: str) -> Outcome:
    if order.status in (OrderStatus.PROCESSING, OrderStatus.CANCELLED) and order.payment_unknown_since is None:
        # A cancelled order in doubt too: a charge may exist, which reconciliation then refunds.
        order.payment_unknown_since = timezone.now()
        order.save(update_fields=["payment_unknown_since", "updated_at"])
    if order.status != OrderStatus.PROCESSING:
        if event is None:
            return Outcome.SKIPPED
        return _skip(order, event, topic, OrderStatus.PAID, "; the payment's outcome is unknown")
    if event is not None:
        _record(event, topic, ProcessedEventOutcome.PAYMENT_UNKNOWN, payment.reason or "")
    PROCESSED.labels("payment_unknown").inc()
    logger.warning(
        "payment outcome unknown: order left in doubt",
        extra={"event": "resilience", "order_number": order.order_number, "reason": payment.reason},
    )
    return Outcome.PAYMENT_UNKNOWN


def _settle(order: Order, payment: PaymentResult, event: OrderCreatedEvent | None, topic: str) -> tuple[Outcome, bool]:
    """Apply the provider's word (approved or not) to the locked order; return the outcome and whether to refund."""
    approved = payment.outcome is ChargeOutcome.APPROVED
    target = OrderStatus.PAID if approved else OrderStatus.FAILED
    was_in_doubt, order.payment_unknown_since = order.payment_unknown_since is not None, None
    if order_transition_allowed(current=order.status, target=target):
        transaction_record = _record_payment(order, payment)
        if approved:
            order.status = OrderStatus.PAID
        else:
            order_fail(order=order)
        order.payment_status = transaction_record.status
        row_update(order, ["status", "payment_status", "payment_unknown_since", "updated_at"])
        if event is not None:
            _record(event, topic, ProcessedEventOutcome.PROCESSED)
        payment_event_create(order=order, payment=transaction_record, correlation_id=order.correlation_id or None)
        PROCESSED.labels("paid" if approved else "payment_failed").inc()
        logger.info(
            "order payment recorded",
            extra={"order_number": order.order_number, "status": target, "attempts": payment.attempts},
        )
        return Outcome.PROCESSED, False
    refund_due = approved and order.status in REFUNDABLE_STATUSES
    recorded = refund_due and not PaymentTransaction.objects.filter(order=order).exists()
    if recorded:
        # Settled without this charge meanwhile: the money is taken and must go back.
        # Recorded now, refunded after the commit.
        _record_payment(order, payment)
        order.payment_status = PaymentStatus.SUCCESS
    if recorded or was_in_doubt:
        order.save(update_fields=["payment_status", "payment_unknown_since", "updated_at"])
    if event is None:
        return Outcome.SKIPPED, refund_due
    return _skip(order, event, topic, target, "; the charge is refunded" if refund_due else ""), refund_due


def _record_payment(order: Order, payment: PaymentResult) -> PaymentTransaction:
    approved = payment.outcome is ChargeOutcome.APPROVED
    record = PaymentTransaction(
        order=order,
        amount=order.subtotal,
        payment_method=PaymentMethod.CARD,
        status=PaymentStatus.SUCCESS if approved else PaymentStatus.FAILED,
        external_transaction_id=payment.charge_id,
        failure_reason=None if approved else (payment.reason or "declined"),
        attempt_count=payment.attempts,
    )
    row_insert(record)
    return record


def processed_events_purge(*, older_than_days: int, batch_size: int) -> int:
    """Forget processed-event records after their retention, a batch per transaction."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    return delete_in_batches(ProcessedEvent.objects.filter(processed_at__lt=cutoff), batch_size=batch_size)
