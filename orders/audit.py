"""The payment audit: no money is kept for an order that is not PAID.

`payment_charges_audit` (beat job `orders.payment_audit`) reads the
provider's charges oldest first from a watermark (`PaymentAuditWatermark`),
a page at a time, matches each page against its orders in one query, and
refunds every successful, unrefunded charge whose order ended CANCELLED or
FAILED or does not exist. A run reads only what was charged since the one
before, so its cost follows the new charges, not the days of history behind
them.

The watermark moves past a charge only once nothing more is owed for it: its
order is PAID or FULFILLED, the charge is refunded (now or before), or its
order was flagged for a human. A run ends, and the next resumes there, at the
first charge that cannot be settled yet:

* younger than the grace period: its payment may still be being recorded
  (every later charge is younger still);
* its order still PENDING or PROCESSING: reconciliation resolves those by
  asking the provider, and the audit comes back once it has. A charge waiting
  longer than `unsettled_wait_seconds` is skipped and counted instead: its
  order, by then flagged by reconciliation, is a human's, and one order must
  not hold every later refund back;
* its refund could not be made now (the provider unreachable, or the order in
  the backoff between two refund attempts).

Two runs at once are harmless: refunds are idempotent, and the watermark
moves by compare-and-set, so the later of two runs stops at its first page.
"""
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from django.utils import timezone

from orders.ledger import order_id_of
from orders.metrics import PAYMENT_REFUNDS, UNMATCHED_CHARGES
from orders.models import UNSETTLED_STATUSES, Order, OrderStatus, PaymentAuditWatermark
from orders.reconciliation import redrives_claim
from orders.services import REFUNDABLE_STATUSES, order_payment_refund
from payments.gateway import ProviderCharge, payment_charges_page, payment_refund

logger = logging.getLogger(__name__)

AUDIT = "payment_audit"
# Charges read per page: one provider call and one orders query each.
PAGE_SIZE = 500
SETTLED_PAID = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED})
REFUND_REASON_AUDIT = "payment audit: charge without a PAID order"


class Stop(str, Enum):
    """Why a run ended before the provider's newest charge."""

    YOUNG = "charge within the grace period"
    UNSETTLED = "order still in payment"
    REFUND_PENDING = "refund not possible yet"
    BUDGET = "time budget spent"
    RACED = "another run moved the watermark"


@dataclass
class AuditReport:
    pages: int = 0
    # Charges the watermark moved past, of which:
    charges: int = 0
    refunded: int = 0
    flagged: int = 0
    # Their order still unsettled after `unsettled_wait_seconds`: left to a human.
    skipped: int = 0
    # Refunds the provider could not be asked for (the run stopped at the first).
    failed: int = 0
    stopped: Stop | None = None  # None: it read up to the provider's newest charge


@dataclass(frozen=True)
class _Rules:
    now: datetime
    grace_seconds: int
    unsettled_wait_seconds: int
    max_attempts: int
    backoff_base_seconds: float


def payment_charges_audit(
    *,
    grace_seconds: int,
    unsettled_wait_seconds: int,
    max_attempts: int,
    backoff_base_seconds: float,
    time_budget_seconds: float = 60.0,
    page_size: int = PAGE_SIZE,
) -> AuditReport:
    """Refund every successful, unrefunded charge since the watermark whose order is not PAID; move the watermark.

    Raises PaymentProviderUnavailable when the provider cannot list its
    charges: the run fails (the job's metric shows it) and the next resumes
    from the watermark.
    """
    report = AuditReport()
    deadline = time.monotonic() + time_budget_seconds
    watermark, _ = PaymentAuditWatermark.objects.get_or_create(name=AUDIT)
    cursor = watermark.charge_id
    while True:
        page = payment_charges_page(starting_after=cursor or None, limit=page_size)
        report.pages += 1
        rules = _Rules(
            now=timezone.now(), grace_seconds=grace_seconds, unsettled_wait_seconds=unsettled_wait_seconds,
            max_attempts=max_attempts, backoff_base_seconds=backoff_base_seconds,
        )  # fmt: skip
        settled = _settle_page(page.charges, rules, report)
        if settled:
            if not _advance(cursor=cursor, to=settled[-1]):
                report.stopped = Stop.RACED
                break
            cursor = settled[-1].id
            report.charges += len(settled)
        if report.stopped is not None or not page.has_more or not page.charges:
            break
        if time.monotonic() > deadline:  # checked after a page, so every run moves on by one at least
            report.stopped = Stop.BUDGET
            break
    if report.refunded or report.flagged or report.failed or report.skipped:
        logger.warning("payment audit", extra={"event": "resilience", **_fields(report)})
    return report


def _settle_page(charges: list[ProviderCharge], rules: _Rules, report: AuditReport) -> list[ProviderCharge]:
    """Settle the page's charges in order; return those settled before the first that cannot be (report.stopped)."""
    orders = dict(
        Order.objects.filter(id__in=[order_id for c in charges if (order_id := order_id_of(c.idempotency_key))])
        .values_list("id", "status")
    )  # fmt: skip
    for index, charge in enumerate(charges):
        order_id = order_id_of(charge.idempotency_key)
        stop = _settle(charge, order_id, orders.get(order_id) if order_id else None, rules, report)
        if stop is not None:
            report.stopped = stop
            return charges[:index]
    return charges


def _settle(charge: ProviderCharge, order_id: uuid.UUID | None, status: str | None, rules: _Rules, report: AuditReport) -> Stop | None:
    """Do what the charge needs; None when nothing more is owed for it."""
    if charge.created > rules.now - timedelta(seconds=rules.grace_seconds):
        return Stop.YOUNG
    if status in SETTLED_PAID or charge.refunded or charge.status != "succeeded":
        return None
    if status in UNSETTLED_STATUSES:
        if charge.created > rules.now - timedelta(seconds=rules.unsettled_wait_seconds):
            return Stop.UNSETTLED
        report.skipped += 1
        logger.error(
            "payment audit skips a charge whose order is still in payment",
            extra={"event": "resilience", "order_id": str(order_id), "charge_id": charge.id, "status": status},
        )
        return None
    if status is None:
        return _refund_unmatched(charge, report)
    return _refund_order(order_id, rules, report)


def _refund_unmatched(charge: ProviderCharge, report: AuditReport) -> Stop | None:
    """A charge whose key names no order of ours: give it back."""
    outcome = payment_refund(idempotency_key=charge.idempotency_key)
    if outcome.failure_reason:
        PAYMENT_REFUNDS.labels("failed").inc()
        report.failed += 1
        return Stop.REFUND_PENDING
    if outcome.refunded:
        PAYMENT_REFUNDS.labels("refunded").inc()
        UNMATCHED_CHARGES.labels("refunded").inc()
        report.refunded += 1
        logger.warning("charge without an order refunded", extra={"event": "resilience", "idempotency_key": charge.idempotency_key})
    return None


def _refund_order(order_id: uuid.UUID, rules: _Rules, report: AuditReport) -> Stop | None:
    """Refund a CANCELLED or FAILED order's charge, within its budget of attempts; flag it once that is spent."""
    claimed, flagged = redrives_claim(
        Order.objects.filter(id=order_id, status__in=REFUNDABLE_STATUSES),
        due_at=timezone.now(),
        max_attempts=rules.max_attempts,
        backoff_base_seconds=rules.backoff_base_seconds,
        flag_reason=lambda order: f"{order.status} with a charge the gateway did not refund after {order.reconcile_attempts} attempt(s)",
        limit=1,
    )
    if flagged:
        UNMATCHED_CHARGES.labels("flagged").inc()
        report.flagged += 1
        return None  # a human's now
    if not claimed:
        # In its backoff, flagged before, or held by a concurrent run: not refunded yet.
        flagged_before = Order.objects.filter(id=order_id, flagged_at__isnull=False).exists()
        return None if flagged_before else Stop.REFUND_PENDING
    outcome = order_payment_refund(order_id=order_id, reason=REFUND_REASON_AUDIT)
    if outcome.failure_reason:
        report.failed += 1
        return Stop.REFUND_PENDING
    if outcome.refunded:
        UNMATCHED_CHARGES.labels("refunded").inc()
        report.refunded += 1
    return None


def _advance(*, cursor: str, to: ProviderCharge) -> bool:
    """Move the watermark from `cursor` to `to`, unless another run moved it meanwhile."""
    return bool(
        PaymentAuditWatermark.objects.filter(name=AUDIT, charge_id=cursor).update(
            charge_id=to.id, charge_created_at=to.created, updated_at=timezone.now()
        )
    )


def _fields(report: AuditReport) -> dict:
    return {**report.__dict__, "stopped": report.stopped.value if report.stopped else None}
