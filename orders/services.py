"""Order writes: creation at checkout, the state machine, cancel and fulfill."""
import logging
import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from checkout.models import Product
from ecommerce.errors import Conflict, NotFound
from ecommerce.kafka.topics import ORDERS_CREATED
from orders.events import (
    EVENT_VERSION,
    ORDER_CREATED,
    OrderCreatedPayload,
    new_event_id,
    utc_timestamp,
)
from orders.models import ORDER_TRANSITIONS, Order, OrderItem, OrderNumberSequence, OrderStatus
from outbox.services import outbox_event_create

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
    """Take the next number of the day's sequence (row-locked until commit)."""
    table = OrderNumberSequence._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table} (day, last_value) VALUES (%s, 1)
            ON CONFLICT (day) DO UPDATE SET last_value = {table}.last_value + 1
            RETURNING last_value
            """,
            [day],
        )
        (value,) = cursor.fetchone()
    return f"ORD-{day:%Y%m%d}-{value:06d}"


@transaction.atomic
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
    order = Order.objects.create(
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
    items = OrderItem.objects.bulk_create(
        [
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
    )
    event_id = new_event_id()
    payload: OrderCreatedPayload = {
        "eventId": str(event_id),
        "eventType": ORDER_CREATED,
        "eventVersion": EVENT_VERSION,
        "timestamp": utc_timestamp(now),
        "correlationId": correlation_id,
        "orderId": str(order.id),
        "orderNumber": order.order_number,
        "customer": {
            "name": order.customer_name,
            "email": order.customer_email,
            "phone": order.customer_phone,
            "shippingAddress": order.shipping_address,
        },
        "items": [
            {
                "productId": str(item.product_id),
                "productSku": item.product_sku,
                "productName": item.product_name,
                "quantity": item.quantity,
                "priceSnapshot": f"{item.price_snapshot:.2f}",
                "subtotal": f"{item.subtotal:.2f}",
            }
            for item in items
        ],
        "subtotal": f"{subtotal:.2f}",
        "cartId": str(cart_id) if cart_id else None,
    }
    outbox_event_create(
        topic=ORDERS_CREATED,
        key=str(order.id),
        aggregate_type="order",
        aggregate_id=str(order.id),
        event_type=ORDER_CREATED,
        payload=payload,
        event_id=event_id,
        correlation_id=correlation_id,
    )
    return order


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


@transaction.atomic
def order_cancel(*, order_number: str, reason: str) -> Order:
    """Cancel a PENDING or PROCESSING order and give its stock back."""
    order = _order_lock(order_number)
    _refuse_transition(order, OrderStatus.CANCELLED)
    # Lock products in id order, the same order checkout uses, so the two never deadlock.
    quantities: dict[uuid.UUID, int] = {}
    for item in order.items.all():
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
    existing = list(
        Product.objects.select_for_update().filter(id__in=quantities).order_by("id").values_list("id", flat=True)
    )
    for product_id in existing:
        Product.objects.filter(id=product_id).update(
            inventory_quantity=F("inventory_quantity") + quantities[product_id]
        )
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
