"""Event payloads of SPEC.md "Kafka"; money is a decimal string, never a float."""
import uuid
from typing import TypedDict

from ecommerce.timestamps import utc_timestamp  # noqa: F401 (re-exported for the event builders)

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


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()
