"""Event payloads of SPEC.md "Kafka" and the one envelope every event carries.

Money is a decimal string, never a float. Every event starts from
`event_envelope`, so its id, type, version, timestamp and correlation id are
built in one place.
"""
import uuid
from datetime import datetime
from typing import TypedDict

from core.timestamps import utc_timestamp

EVENT_VERSION = "1.0"
ORDER_CREATED = "ORDER_CREATED"
PAYMENT_COMPLETED = "PAYMENT_COMPLETED"
# A PaymentCompleted-shaped event on `payments.completed`: the charge was given back.
PAYMENT_REFUNDED = "PAYMENT_REFUNDED"


class EventEnvelope(TypedDict):
    eventId: str
    eventType: str
    eventVersion: str
    timestamp: str
    correlationId: str | None


class ShippingAddressPayload(TypedDict):
    street: str
    city: str
    state: str
    postalCode: str
    country: str


class CustomerPayload(TypedDict):
    name: str
    email: str
    phone: str
    shippingAddress: ShippingAddressPayload


class OrderItemPayload(TypedDict):
    productId: str
    productSku: str
    productName: str
    quantity: int
    priceSnapshot: str
    subtotal: str


class OrderCreatedPayload(EventEnvelope):
    orderId: str
    orderNumber: str
    customer: CustomerPayload
    items: list[OrderItemPayload]
    subtotal: str
    cartId: str | None


class PaymentCompletedPayload(EventEnvelope):
    orderId: str
    orderNumber: str
    paymentTransactionId: str
    status: str
    amount: str
    paymentMethod: str
    externalTransactionId: str | None
    failureReason: str | None


class PaymentRefundedPayload(PaymentCompletedPayload):
    """PaymentCompleted's fields (status "REFUNDED") plus the refund's own."""

    refundTransactionId: str | None
    refundReason: str
    refundedAt: str


def event_envelope(*, event_type: str, correlation_id: str | None, moment: datetime) -> EventEnvelope:
    """Start an event: a fresh `eventId`, its type and version, when, and the correlation id."""
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": event_type,
        "eventVersion": EVENT_VERSION,
        "timestamp": utc_timestamp(moment),
        "correlationId": correlation_id,
    }
