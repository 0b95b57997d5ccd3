"""Settle a payment in doubt, or one stuck in PROCESSING, by asking the provider for the charge under its key.

Reconciliation (orders/reconciliation.py) calls `order_payment_resolve` for
each order it claims that is PROCESSING, or CANCELLED while its payment was in
doubt. It never commits FAILED without the provider's word:

* the provider holds a succeeded charge: PAID and one PaymentCompleted (for
  an order cancelled meanwhile: the charge is refunded, once);
* it holds a failed (declined) charge: FAILED, its stock given back;
* it says there is no charge: charge again under the same key, until the
  order has made PAYMENT_UNKNOWN_MAX_CHARGES requests in all; then FAILED,
  "the payment provider confirms no charge";
* it cannot be asked (time-out, 5xx, breaker open): nothing changes; the
  claim's backoff decides when it is asked again.
"""
import logging
import uuid

from django.conf import settings
from django.db import transaction

from orders.metrics import RECONCILED
from orders.models import Order, OrderStatus
from orders.processing import OrderCreatedEvent, Outcome, order_payment_settle
from payments.gateway import ChargeOutcome, PaymentResult, payment_charge, payment_lookup

logger = logging.getLogger(__name__)

# Recorded as the processed event's topic when reconciliation, not Kafka, delivered it.
RECONCILIATION_SOURCE = "reconciliation"
REASON_NO_CHARGE = "the payment provider confirms no charge after {requests} charge request(s)"
REASON_DECLINED_FOUND = "declined (the provider's charge under the key failed)"


def _charge_again_or_give_up(order_id: uuid.UUID, max_charges: int) -> Order | None:
    """With the provider's word that there is no charge: count one more request (return the order), or None to give up.

    Counted under the order's lock, with the consumer's requests, so the
    limit holds whoever asks.
    """
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).get(id=order_id)
        if order.payment_charge_requests >= max_charges:
            return None
        order.payment_charge_requests += 1
        order.save(update_fields=["payment_charge_requests", "updated_at"])
        return order


def _in_doubt_cleared(order_id: uuid.UUID) -> None:
    """A CANCELLED order whose charge the provider says does not exist: nothing to refund, no longer in doubt."""
    Order.objects.filter(id=order_id, status=OrderStatus.CANCELLED).update(payment_unknown_since=None)


def order_payment_resolve(*, order_id: uuid.UUID, event: OrderCreatedEvent | None, max_charges: int | None = None) -> Outcome:
    """Ask the provider what became of the order's charge and settle the order by its word (see the module).

    `event` is the order's OrderCreated when no processed record exists for it
    yet (the consumer stopped mid-payment): it is recorded with the outcome.
    """
    max_charges = settings.PAYMENT_UNKNOWN_MAX_CHARGES if max_charges is None else max_charges
    key = str(order_id)
    lookup = payment_lookup(idempotency_key=key)
    if not lookup.known:
        logger.warning("payment still in doubt: the provider cannot be asked", extra={
            "event": "resilience", "order_id": key, "reason": lookup.reason,
        })  # fmt: skip
        return Outcome.PAYMENT_UNKNOWN
    if lookup.found is not None:
        charge = lookup.found
        succeeded = charge.status == "succeeded"
        payment = PaymentResult(
            ChargeOutcome.APPROVED if succeeded else ChargeOutcome.DECLINED,
            attempts=0,
            charge_id=charge.id,
            reason=None if succeeded else REASON_DECLINED_FOUND,
        )
        return order_payment_settle(order_id=order_id, payment=payment, event=event, topic=RECONCILIATION_SOURCE)
    status = Order.objects.filter(id=order_id).values_list("status", flat=True).first()
    if status != OrderStatus.PROCESSING:
        _in_doubt_cleared(order_id)
        return Outcome.SKIPPED
    order = _charge_again_or_give_up(order_id, max_charges)
    if order is None:
        requests = Order.objects.filter(id=order_id).values_list("payment_charge_requests", flat=True).first()
        payment = PaymentResult(ChargeOutcome.DECLINED, attempts=0, reason=REASON_NO_CHARGE.format(requests=requests))
    else:
        RECONCILED.labels("payment_charged_again").inc()
        logger.warning("payment charged again: the provider has no charge under the key", extra={
            "event": "resilience", "order_id": key, "requests": order.payment_charge_requests,
        })  # fmt: skip
        payment = payment_charge(idempotency_key=key, amount=order.subtotal)
    return order_payment_settle(order_id=order_id, payment=payment, event=event, topic=RECONCILIATION_SOURCE)
