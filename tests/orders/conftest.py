import json

import pytest
from django.db import transaction

from messaging.kafka.consumer import IncomingMessage
from outbox.models import OutboxEvent
from tests.api import add_to_cart, checkout
from tests.factories import ProductFactory


def order_created_message(row: OutboxEvent, *, offset: int = 0) -> IncomingMessage:
    """The Kafka message the relay makes of an OrderCreated outbox row."""
    return IncomingMessage(
        topic=row.topic,
        partition=0,
        offset=offset,
        timestamp=None,
        key=row.key.encode(),
        value=json.dumps(row.payload).encode(),
        headers=tuple((name, str(value).encode()) for name, value in row.headers.items()),
    )


@pytest.fixture
def place_order(api_client):
    """Check out a cart; return the order's OrderCreated outbox row."""
    counter = iter(range(10_000))

    def place(**customer) -> OutboxEvent:
        session = f"pay-{next(counter)}-{id(api_client)}"
        product = ProductFactory(inventory_quantity=10)
        add_to_cart(api_client, session, product.id, 2)
        response = checkout(api_client, session, f"key-{session}", **customer)
        assert response.status_code == 201, response.content
        return OutboxEvent.objects.get(payload__orderNumber=response.json()["orderNumber"])

    return place


@pytest.fixture
def in_transaction_outbox():
    return transaction.atomic


@pytest.fixture(autouse=True)
def _payments_over_http(payment_provider):
    """Every order test pays through the fake provider's process (tests/payment_provider.py), faults reset."""
    return payment_provider
