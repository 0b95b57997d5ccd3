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

The payment audit (orders/audit.py) gives back charges whose order ended
unpaid; it spends the same per-order budget of attempts (`redrives_claim`).

Each order has one budget of re-drives (`reconcile_attempts`), each claimed
under the order's row lock with SKIP LOCKED and spaced by a doubling backoff,
so two runs at once split the orders instead of driving one twice. When the
budget is spent the order is flagged for a human. A payment re-drive the
provider could not answer gives its attempt back (`_attempt_given_back`).
"""
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from messaging.contract.events import ORDER_CREATED
from orders.metrics import RECONCILED
from orders.models import UNSETTLED_STATUSES, Order, OrderStatus, ProcessedEvent
from orders.payment_resolution import order_payment_resolve
from orders.processing import Outcome, order_created_from_payload
from orders.services import order_created_event_create
from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import outbox_events_republish
from resilience.backoff import Jitter, backoff_seconds

logger = logging.getLogger(__name__)

# Orders claimed per transaction: a PROCESSING one may take a full payment
# (three 5 s attempts), so a batch is small and the run checks its budget between batches.
BATCH_SIZE = 10
# The shortest and longest waits between two re-drives of one order.
MIN_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 3600.0


@dataclass
class ReconcileReport:
    republished: int = 0
    payment_resumed: int = 0
    flagged: int = 0
    # PENDING orders whose OrderCreated the outbox still holds (it publishes them itself).
    left_to_outbox: int = 0
    errors: int = 0


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


def redrives_claim(
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


def _attempt_given_back(order_id: uuid.UUID, *, backoff_base_seconds: float) -> None:
    """A re-drive that learned nothing because the provider could not answer: not spent, and the next one soon.

    An outage of the provider is the provider's alert (`PaymentFailuresHigh`,
    the breaker's), not each order's: spending the order's budget on it would
    double its backoff at every attempt made during the outage (one order
    waited 30 minutes after the provider came back) and, after
    ORDER_RECONCILE_MAX_ATTEMPTS, hand a healthy order to a human. What bounds
    an order in doubt is its charge requests (PAYMENT_UNKNOWN_MAX_CHARGES),
    counted apart: the provider's word ends it.
    """
    Order.objects.filter(id=order_id, reconcile_attempts__gt=0).update(
        reconcile_attempts=F("reconcile_attempts") - 1,
        reconcile_next_at=timezone.now() + _backoff(1, backoff_base_seconds),
    )


def _resume_payment(order_id: uuid.UUID, report: ReconcileReport, *, backoff_base_seconds: float) -> None:
    """Settle a PROCESSING order (or a CANCELLED one in doubt) by what the provider holds under its key."""
    row = _order_created_row(order_id)
    event = None
    if row is not None and not ProcessedEvent.objects.filter(event_id=row.payload["eventId"]).exists():
        event = order_created_from_payload(row.payload)  # the consumer stopped mid-payment: recorded with the outcome
    if order_payment_resolve(order_id=order_id, event=event) == Outcome.PAYMENT_UNKNOWN:
        _attempt_given_back(order_id, backoff_base_seconds=backoff_base_seconds)
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
        claimed, flagged = redrives_claim(
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
                    _resume_payment(order.order_id, report, backoff_base_seconds=older_than_seconds)
            except Exception:  # one order must not stop the others; its next attempt comes after the backoff
                report.errors += 1
                logger.exception("order reconciliation failed", extra={"event": "resilience", "order_id": str(order.order_id)})
    if report.republished or report.payment_resumed or report.flagged:
        logger.warning("orders reconciled", extra={"event": "resilience", **report.__dict__})
    return report
