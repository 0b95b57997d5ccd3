"""Event payloads of SPEC.md "Kafka"; money is a decimal string, never a float."""
import uuid
from datetime import datetime, timezone
from typing import TypedDict

EVENT_VERSION = "1.0"
ORDER_CREATED = "ORDER_CREATED"
PAYMENT_COMPLETED = "PAYMENT_COMPLETED"


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


class OrderCreatedPayload(TypedDict):
    eventId: str
    eventType: str
    eventVersion: str
    timestamp: str
    correlationId: str | None
    orderId: str
    orderNumber: str
    customer: CustomerPayload
    items: list[OrderItemPayload]
    subtotal: str
    cartId: str | None


def utc_timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()
