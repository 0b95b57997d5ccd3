"""Anti-entropy: every order reaches a terminal state, and no money is kept for an order that is not PAID.

`orders_reconcile` (beat job `orders.reconcile`) finds orders PENDING or
PROCESSING for longer than a threshold, which happens when the broker lost
their `OrderCreated` or the consumer stopped mid-payment, and re-drives each:

* PENDING: its `OrderCreated` outbox row goes back to PENDING, unchanged (the
  same `eventId`), and the relay publishes it again; the consumer's
  processed-events table makes a second delivery harmless. A row the relay
  still holds is left to it.
* PROCESSING (stopped mid-payment, or in doubt after an unknown answer), and
  CANCELLED while in doubt: the provider is asked for the charge under the
  order's key and the order settled by its word (orders/payment_resolution.py);
  a charge that was taken is found, not taken again.

`payment_charges_audit` (beat job `orders.payment_audit`) pages through the
provider's successful charges and refunds any whose order ended CANCELLED or
FAILED (or does not exist), once it is older than a grace period.

Each order has one budget of re-drives (`reconcile_attempts`), each claimed
under the order's row lock with SKIP LOCKED and spaced by a doubling backoff,
so two runs at once split the orders instead of driving one twice. When the
budget is spent the order is flagged for a human.
"""
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from messaging.contract.events import ORDER_CREATED
from orders.metrics import PAYMENT_REFUNDS, RECONCILED, UNMATCHED_CHARGES
from orders.models import UNSETTLED_STATUSES, Order, OrderStatus, ProcessedEvent
from orders.payment_resolution import order_payment_resolve
from orders.processing import order_created_from_payload
from orders.services import REFUNDABLE_STATUSES, order_created_event_create, order_payment_refund
from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import outbox_events_republish
from payments.gateway import ProviderCharge, payment_charges_page, payment_refund
from resilience.backoff import Jitter, backoff_seconds

logger = logging.getLogger(__name__)

# Orders claimed per transaction: a PROCESSING one may take a full payment
# (three 5 s attempts), so a batch is small and the run checks its budget between batches.
BATCH_SIZE = 10
# The shortest and longest waits between two re-drives of one order.
MIN_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 3600.0
SETTLED_PAID = (OrderStatus.PAID, OrderStatus.FULFILLED)
# Charges per page of the provider's list (each page one call under the paymentService policy).
CHARGES_PAGE_SIZE = 500
REFUND_REASON_AUDIT = "payment audit: charge without a PAID order"


@dataclass
class ReconcileReport:
    republished: int = 0
    payment_resumed: int = 0
    flagged: int = 0
    # PENDING orders whose OrderCreated the outbox still holds (it publishes them itself).
    left_to_outbox: int = 0
    errors: int = 0


@dataclass
class AuditReport:
    refunded: int = 0
    flagged: int = 0
    failed: int = 0
    # Charges of orders not yet settled: reconciliation drives those first.
    deferred: int = 0


@dataclass(frozen=True)
class _Claimed:
    order_id: uuid.UUID
    status: str


def _backoff(attempt: int, base_seconds: float) -> timedelta:
    # Equal jitter over twice the base: re-drive N waits between base * 2**(N-1)
    # and twice that, so never sooner than the stuck threshold (a re-drive has
    # as long to land as the first try had), and orders stuck by one outage spread out.
    base_seconds = max(base_seconds, MIN_BACKOFF_SECONDS)
    seconds = backoff_seconds(attempt, initial_seconds=2 * base_seconds, max_seconds=MAX_BACKOFF_SECONDS, jitter=Jitter.EQUAL)
    return timedelta(seconds=seconds)


def _claim(
    orders: QuerySet,
    *,
    due_at: datetime,
    max_attempts: int,
    backoff_base_seconds: float,
    flag_reason: Callable[[Order], str],
    limit: int,
) -> tuple[list[_Claimed], list[Order]]:
    """Take up to `limit` orders due by `due_at`: spend one re-drive of each, or flag those whose budget is spent.

    One short transaction: the rows are locked SKIP LOCKED, so a concurrent
    run takes other orders, and the new `reconcile_next_at` (after `due_at`)
    keeps this one away from every run, this one included, until its backoff
    has passed. `updated_at` is left alone (bulk_update), so the order still
    counts as stuck until it moves.
    """
    with transaction.atomic():
        due = list(
            orders.select_for_update(skip_locked=True, of=("self",))
            .filter(flagged_at__isnull=True)
            .filter(Q(reconcile_next_at__isnull=True) | Q(reconcile_next_at__lte=due_at))
            .order_by("updated_at", "id")[:limit]
        )
        now = timezone.now()
        claimed, flagged = [], []
        for order in due:
            if order.reconcile_attempts >= max_attempts:
                order.flagged_at = now
                order.flag_reason = flag_reason(order)
                flagged.append(order)
            else:
                order.reconcile_attempts += 1
                order.reconcile_next_at = now + _backoff(order.reconcile_attempts, backoff_base_seconds)
                claimed.append(_Claimed(order_id=order.id, status=order.status))
        Order.objects.bulk_update(due, ["reconcile_attempts", "reconcile_next_at", "flagged_at", "flag_reason"])
    for order in flagged:
        logger.error(
            "order flagged for a human",
            extra={"event": "resilience", "order_number": order.order_number, "reason": order.flag_reason},
        )
    return claimed, flagged


def _order_created_row(order_id: uuid.UUID) -> OutboxEvent | None:
    return (
        OutboxEvent.objects.filter(aggregate_type="order", aggregate_id=str(order_id), event_type=ORDER_CREATED)
        .order_by("id")
        .first()
    )


def _republish(order_id: uuid.UUID, report: ReconcileReport) -> None:
    with transaction.atomic():
        row = _order_created_row(order_id)
        if row is not None and row.status == OutboxStatus.PENDING:
            report.left_to_outbox += 1
            return
        if row is None:
            # Purged after its retention: written again (a new eventId; the order
            # is still PENDING, so no consumer has applied the old one).
            order_created_event_create(order=Order.objects.get(id=order_id))
        else:
            outbox_events_republish(ids=[row.id])
    RECONCILED.labels("republished").inc()
    report.republished += 1
    logger.warning("OrderCreated republished", extra={"event": "resilience", "order_id": str(order_id)})


def _resume_payment(order_id: uuid.UUID, report: ReconcileReport) -> None:
    """Settle a PROCESSING order (or a CANCELLED one in doubt) by what the provider holds under its key."""
    row = _order_created_row(order_id)
    event = None
    if row is not None and not ProcessedEvent.objects.filter(event_id=row.payload["eventId"]).exists():
        event = order_created_from_payload(row.payload)  # the consumer stopped mid-payment: recorded with the outcome
    order_payment_resolve(order_id=order_id, event=event)
    RECONCILED.labels("payment_resumed").inc()
    report.payment_resumed += 1
    logger.warning("payment resolved by lookup", extra={"event": "resilience", "order_id": str(order_id)})


def _stuck_reason(order: Order) -> str:
    return f"still {order.status} after {order.reconcile_attempts} reconciliation attempt(s)"


def orders_reconcile(
    *, older_than_seconds: int, max_attempts: int, time_budget_seconds: float = 60.0, batch_size: int = BATCH_SIZE
) -> ReconcileReport:
    """Re-drive every order PENDING or PROCESSING for longer than `older_than_seconds`, within the time budget."""
    report = ReconcileReport()
    deadline = time.monotonic() + time_budget_seconds
    started = timezone.now()
    stuck = Order.objects.filter(
        Q(status__in=UNSETTLED_STATUSES) | Q(status=OrderStatus.CANCELLED, payment_unknown_since__isnull=False),
        updated_at__lt=started - timedelta(seconds=older_than_seconds),
    )
    while time.monotonic() < deadline:
        claimed, flagged = _claim(
            stuck,
            due_at=started,
            max_attempts=max_attempts,
            backoff_base_seconds=older_than_seconds,
            flag_reason=_stuck_reason,
            limit=batch_size,
        )
        RECONCILED.labels("flagged").inc(len(flagged))
        report.flagged += len(flagged)
        if not claimed and not flagged:
            break
        for order in claimed:
            try:
                if order.status == OrderStatus.PENDING:
                    _republish(order.order_id, report)
                else:
                    _resume_payment(order.order_id, report)
            except Exception:  # one order must not stop the others; its next attempt comes after the backoff
                report.errors += 1
                logger.exception("order reconciliation failed", extra={"event": "resilience", "order_id": str(order.order_id)})
    if report.republished or report.payment_resumed or report.flagged:
        logger.warning("orders reconciled", extra={"event": "resilience", **report.__dict__})
    return report


def _refund_unmatched(charge: ProviderCharge, report: AuditReport) -> None:
    """A charge whose key names no order of ours: give it back."""
    outcome = payment_refund(idempotency_key=charge.idempotency_key)
    if outcome.refunded:
        PAYMENT_REFUNDS.labels("refunded").inc()
        UNMATCHED_CHARGES.labels("refunded").inc()
        report.refunded += 1
        logger.warning("charge without an order refunded", extra={"event": "resilience", "idempotency_key": charge.idempotency_key})
    elif outcome.failure_reason:
        PAYMENT_REFUNDS.labels("failed").inc()
        report.failed += 1


def _refund_order(order_id: uuid.UUID, *, max_attempts: int, backoff_base_seconds: float, report: AuditReport) -> None:
    claimed, flagged = _claim(
        Order.objects.filter(id=order_id, status__in=REFUNDABLE_STATUSES),
        due_at=timezone.now(),
        max_attempts=max_attempts,
        backoff_base_seconds=backoff_base_seconds,
        flag_reason=lambda order: f"{order.status} with a charge the gateway did not refund after {order.reconcile_attempts} attempt(s)",
        limit=1,
    )
    if flagged:
        UNMATCHED_CHARGES.labels("flagged").inc()
        report.flagged += 1
    if not claimed:
        return  # flagged, in its backoff, or being handled by a concurrent run
    outcome = order_payment_refund(order_id=order_id, reason=REFUND_REASON_AUDIT)
    if outcome.refunded:
        UNMATCHED_CHARGES.labels("refunded").inc()
        report.refunded += 1
    elif outcome.failure_reason:
        report.failed += 1


def payment_charges_audit(
    *, grace_seconds: int, lookback_hours: int, max_attempts: int, backoff_base_seconds: float
) -> AuditReport:
    """Refund every successful, unrefunded charge (older than the grace period) whose order is not PAID."""
    report = AuditReport()
    now = timezone.now()
    created_after, created_before = now - timedelta(hours=lookback_hours), now - timedelta(seconds=grace_seconds)
    charges = _provider_charges(created_after=created_after, created_before=created_before)
    open_charges = [charge for charge in charges if not charge.refunded]
    orders = dict(
        Order.objects.filter(id__in=[key for key in (_order_id(c.idempotency_key) for c in open_charges) if key])
        .values_list("id", "status")
    )
    for charge in open_charges:
        order_id = _order_id(charge.idempotency_key)
        status = orders.get(order_id) if order_id else None
        if status in SETTLED_PAID:
            continue
        try:
            if status is None:
                _refund_unmatched(charge, report)
            elif status in UNSETTLED_STATUSES:
                report.deferred += 1
            else:
                _refund_order(order_id, max_attempts=max_attempts, backoff_base_seconds=backoff_base_seconds, report=report)
        except Exception:  # one charge must not stop the audit; the next run sees it again
            report.failed += 1
            logger.exception("payment audit failed for a charge", extra={"event": "resilience", "idempotency_key": charge.idempotency_key})
    if report.refunded or report.flagged or report.failed:
        logger.warning("payment audit", extra={"event": "resilience", **report.__dict__})
    return report


def _provider_charges(*, created_after: datetime, created_before: datetime) -> list[ProviderCharge]:
    """The provider's succeeded charges created in the window, read page by page from the first.

    Every page from the provider's first charge: the list is ascending and
    has no time filter. (The watermark that makes this cost only what is new
    is issue 14's item 5.)
    """
    charges: list[ProviderCharge] = []
    cursor = None
    while True:
        page = payment_charges_page(starting_after=cursor, limit=CHARGES_PAGE_SIZE)
        charges.extend(charge for charge in page.charges if created_after < charge.created <= created_before)
        if not page.has_more or not page.charges:
            return charges
        cursor = page.charges[-1].id


def _order_id(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key)
    except ValueError:
        return None
