"""Order writes: creation at checkout, the state machine, cancel and fulfill."""
import logging
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from catalog.inventory import stock_release
from core.db import row_insert, rows_insert
from core.errors import Conflict, NotFound
from messaging.contract.events import (
    ORDERS_CREATED,
    PAYMENTS_COMPLETED,
    EventEnvelope,
    PaymentCompletedPayload,
    PaymentRefundedPayload,
    order_created_payload,
    order_item_payload,
    payment_completed_payload,
    payment_refunded_payload,
)
from orders.metrics import PAYMENT_REFUNDS
from orders.models import ORDER_TRANSITIONS, Order, OrderItem, OrderStatus, PaymentMethod, PaymentStatus, PaymentTransaction
from outbox.models import OutboxEvent
from outbox.services import outbox_event_create
from payments.gateway import RefundResult, payment_refund

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShippingAddress:
    street: str
    city: str
    state: str
    postal_code: str
    country: str


@dataclass(frozen=True)
class CustomerInfo:
    name: str
    email: str
    phone: str
    shipping_address: ShippingAddress


@dataclass(frozen=True)
class OrderLine:
    product_id: uuid.UUID
    product_sku: str
    product_name: str
    quantity: int
    price_snapshot: Decimal


def order_number_next(*, day: date) -> str:
    """Take the next number of the day's sequence (migration 0006: no lock held until commit; may leave gaps)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT orders_number_next(%s)", [day])
        (value,) = cursor.fetchone()
    return f"ORD-{day:%Y%m%d}-{value:06d}"


# No savepoint when nested: checkout's caller (the idempotent request) holds
# one already, and a savepoint of its own costs two statements per order.
@transaction.atomic(savepoint=False)
def order_create(
    *,
    customer: CustomerInfo,
    lines: list[OrderLine],
    cart_id: uuid.UUID | None,
    correlation_id: str | None,
) -> Order:
    """Create a PENDING order and its `OrderCreated` outbox row in one transaction."""
    now = timezone.now()
    subtotal = sum((line.price_snapshot * line.quantity for line in lines), Decimal("0.00"))
    address = customer.shipping_address
    order = Order(
        order_number=order_number_next(day=now.date()),
        cart_id=cart_id,
        customer_name=customer.name,
        customer_email=customer.email,
        customer_phone=customer.phone,
        shipping_address={
            "street": address.street,
            "city": address.city,
            "state": address.state,
            "postalCode": address.postal_code,
            "country": address.country,
        },
        subtotal=subtotal,
        status=OrderStatus.PENDING,
        correlation_id=correlation_id or "",
    )
    row_insert(order)
    items = [
        OrderItem(
            order=order,
            product_id=line.product_id,
            product_sku=line.product_sku,
            product_name=line.product_name,
            quantity=line.quantity,
            price_snapshot=line.price_snapshot,
            subtotal=line.price_snapshot * line.quantity,
        )
        for line in lines
    ]
    rows_insert(items)
    order_created_event_create(order=order, items=items)
    return order


def _order_event_record(*, topic: str, order: Order, payload: EventEnvelope) -> OutboxEvent:
    """Put an order's event in the outbox: keyed by the order id, with the envelope's id, type and correlation id."""
    return outbox_event_create(
        topic=topic,
        key=str(order.id),
        aggregate_type="order",
        aggregate_id=str(order.id),
        event_type=payload["eventType"],
        payload=payload,
        event_id=uuid.UUID(payload["eventId"]),
        correlation_id=payload["correlationId"],
    )


def order_created_event_create(*, order: Order, items: list[OrderItem] | None = None) -> OutboxEvent:
    """Record the order's `OrderCreated` in the outbox (inside the caller's transaction).

    `items` saves checkout a query; without them the order's items are read.
    """
    if items is None:
        items = list(order.items.all())
    payload = order_created_payload(
        order_id=order.id,
        order_number=order.order_number,
        customer={
            "name": order.customer_name,
            "email": order.customer_email,
            "phone": order.customer_phone,
            "shippingAddress": order.shipping_address,
        },
        items=[
            order_item_payload(
                product_id=item.product_id,
                product_sku=item.product_sku,
                product_name=item.product_name,
                quantity=item.quantity,
                price_snapshot=item.price_snapshot,
                subtotal=item.subtotal,
            )
            for item in items
        ],
        subtotal=order.subtotal,
        cart_id=order.cart_id,
        correlation_id=order.correlation_id or None,
        created_at=order.created_at,
    )
    return _order_event_record(topic=ORDERS_CREATED, order=order, payload=payload)


def order_transition_allowed(*, current: str, target: str) -> bool:
    return target in ORDER_TRANSITIONS.get(current, frozenset())


def _order_lock(order_number: str) -> Order:
    order = Order.objects.select_for_update(of=("self",)).filter(order_number=order_number).first()
    if order is None:
        raise NotFound(f"Order {order_number} not found.")
    return order


def _refuse_transition(order: Order, target: str) -> None:
    if not order_transition_allowed(current=order.status, target=target):
        raise Conflict(
            f"Order {order.order_number} is {order.status} and cannot become {target}.",
            problem_type="illegal-transition",
            extensions={"currentStatus": order.status},
        )


def _stock_give_back(order: Order) -> None:
    """Give back the stock the order's items hold (in the caller's transaction, the order locked)."""
    returned: dict[uuid.UUID, int] = {}
    for item in order.items.all():
        returned[item.product_id] = returned.get(item.product_id, 0) + item.quantity
    stock_release(returned=returned)


def order_fail(*, order: Order) -> None:
    """Move a locked PROCESSING order to FAILED and give its stock back, in the caller's transaction.

    Every move to FAILED goes through here. Exactly once: FAILED is terminal,
    and the transition is checked under the order's row lock, so a second
    caller is refused before any stock moves.
    """
    if not order_transition_allowed(current=order.status, target=OrderStatus.FAILED):
        raise Conflict(f"Order {order.order_number} is {order.status} and cannot become FAILED.")
    _stock_give_back(order)
    order.status = OrderStatus.FAILED
    order.save(update_fields=["status", "updated_at"])


@transaction.atomic
def order_cancel(*, order_number: str, reason: str) -> Order:
    """Cancel a PENDING or PROCESSING order and give its stock back."""
    order = _order_lock(order_number)
    _refuse_transition(order, OrderStatus.CANCELLED)
    _stock_give_back(order)
    order.status = OrderStatus.CANCELLED
    order.cancellation_reason = reason
    order.completed_at = timezone.now()
    order.save(update_fields=["status", "cancellation_reason", "completed_at", "updated_at"])
    logger.info("order cancelled", extra={"order_number": order.order_number})
    return order


@transaction.atomic
def order_fulfill(*, order_number: str, tracking_number: str, carrier: str, notes: str) -> Order:
    """Mark a PAID order as shipped."""
    order = _order_lock(order_number)
    _refuse_transition(order, OrderStatus.FULFILLED)
    order.status = OrderStatus.FULFILLED
    order.tracking_number = tracking_number
    order.carrier = carrier
    order.fulfillment_notes = notes
    order.completed_at = timezone.now()
    order.save(
        update_fields=["status", "tracking_number", "carrier", "fulfillment_notes", "completed_at", "updated_at"]
    )
    logger.info("order fulfilled", extra={"order_number": order.order_number})
    return order


def payment_event_create(*, order: Order, payment: PaymentTransaction, correlation_id: str | None) -> OutboxEvent:
    """Announce a payment on `payments.completed`: PaymentCompleted, or PaymentRefunded once given back.

    Runs inside the transaction that recorded the payment, like every outbox write.
    """
    completed = payment_completed_payload(
        order_id=order.id,
        order_number=order.order_number,
        payment_transaction_id=payment.id,
        status=payment.status,
        amount=payment.amount,
        payment_method=payment.payment_method,
        external_transaction_id=payment.external_transaction_id,
        failure_reason=payment.failure_reason,
        correlation_id=correlation_id,
        moment=timezone.now(),
    )
    payload: PaymentCompletedPayload | PaymentRefundedPayload = completed
    if payment.status == PaymentStatus.REFUNDED:
        payload = payment_refunded_payload(
            payment=completed,
            refund_transaction_id=payment.refund_external_transaction_id,
            refund_reason=payment.refund_reason,
            refunded_at=payment.refunded_at,
        )
    return _order_event_record(topic=PAYMENTS_COMPLETED, order=order, payload=payload)


# Orders whose money must not be kept: settled without being paid.
REFUNDABLE_STATUSES = frozenset({OrderStatus.CANCELLED, OrderStatus.FAILED})


def order_payment_refund(*, order_id: uuid.UUID, reason: str) -> RefundResult:
    """Give back the charge taken for a CANCELLED or FAILED order, and record it; safe to repeat.

    The gateway refunds the order id's charge at most once, so a retry or a
    second caller (the consumer and the payment audit) gets the same refund
    back; the refund is recorded, and PaymentRefunded announced, once, under
    the order's lock. An order that may still become PAID is refused
    without calling the gateway.
    """
    status = Order.objects.filter(id=order_id).values_list("status", flat=True).first()
    if status not in REFUNDABLE_STATUSES:
        raise Conflict(f"Order {order_id} is {status}; only a CANCELLED or FAILED order is refunded.")
    outcome = payment_refund(idempotency_key=str(order_id))
    if outcome.failure_reason:
        PAYMENT_REFUNDS.labels("failed").inc()
        logger.error(
            "refund failed", extra={"event": "resilience", "order_id": str(order_id), "reason": outcome.failure_reason}
        )
        return outcome
    if not outcome.refunded:
        return outcome  # nothing was charged
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).get(id=order_id)
        payment = PaymentTransaction.objects.select_for_update().filter(order=order).first()
        if payment is not None and payment.status == PaymentStatus.REFUNDED:
            return outcome  # recorded by an earlier call
        if payment is None:
            # The charge was taken but never recorded (the payer stopped in between).
            payment = PaymentTransaction(
                order=order,
                amount=order.subtotal,
                payment_method=PaymentMethod.CARD,
                external_transaction_id=outcome.charge_id,
                attempt_count=0,
            )
        payment.status = PaymentStatus.REFUNDED
        payment.refunded_at = timezone.now()
        payment.refund_external_transaction_id = outcome.refund_id
        payment.refund_reason = reason
        payment.save()
        order.payment_status = PaymentStatus.REFUNDED
        order.save(update_fields=["payment_status", "updated_at"])
        payment_event_create(order=order, payment=payment, correlation_id=order.correlation_id or None)
    PAYMENT_REFUNDS.labels("refunded").inc()
    logger.warning(
        "payment refunded",
        extra={"event": "resilience", "order_number": order.order_number, "status": order.status, "reason": reason},
    )
    return outcome


def orders_flag_clear(*, ids: list[uuid.UUID]) -> int:
    """Unflag orders a human has looked at, with a fresh reconciliation budget; return how many."""
    return Order.objects.filter(id__in=ids, flagged_at__isnull=False).update(
        flagged_at=None, flag_reason="", reconcile_attempts=0, reconcile_next_at=None
    )
