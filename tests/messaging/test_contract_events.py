"""Every event the platform produces conforms to its published schema, and the consumer refuses
exactly what the schema refuses, without touching the order."""
import copy
import json
from typing import Any

import pytest

from deadletters.models import DeadLetter
from messaging.contract.events import ORDERS_CREATED, ORDERS_CREATED_DLQ
from orders.models import Order, PaymentTransaction, ProcessedEvent
from orders.processing import PoisonMessage, process_order_created_message
from orders.services import order_payment_refund
from outbox.models import OutboxEvent
from payments.gateway import payment_charge, payment_lookup
from tests.api import CORRELATION_HEADER, add_to_cart, checkout
from tests.factories import ProductFactory
from tests.messaging.contract_support import assert_conforms, published_validator
from tests.orders.conftest import order_created_message
from tests.support import header, produce, read_topic, wait_for


def place_order(api_client, session: str) -> tuple[OutboxEvent, str]:
    """Check out a two-product cart through the API; return its OrderCreated row and the response's correlation id."""
    for quantity in (1, 3):
        add_to_cart(api_client, session, ProductFactory(inventory_quantity=10).id, quantity)
    response = checkout(api_client, session, f"key-{session}")
    assert response.status_code == 201, response.content
    row = OutboxEvent.objects.get(event_type="ORDER_CREATED", payload__orderNumber=response.json()["orderNumber"])
    return row, response[CORRELATION_HEADER]


def payment_event(order_id: Any, event_type: str) -> OutboxEvent:
    [row] = OutboxEvent.objects.filter(aggregate_id=str(order_id), event_type=event_type)
    return row


def assert_not_charged(order: Order) -> None:
    lookup = payment_lookup(idempotency_key=str(order.id))
    assert (lookup.known, lookup.found) == (True, None)


def assert_untouched(row: OutboxEvent) -> None:
    """The order is as checkout left it: PENDING, nothing charged, recorded or announced."""
    order = Order.objects.get(id=row.aggregate_id)
    assert (order.status, order.payment_status) == ("PENDING", "PENDING")
    assert not PaymentTransaction.objects.filter(order=order).exists()
    assert_not_charged(order)
    assert not ProcessedEvent.objects.filter(event_id=row.event_id).exists()
    assert list(OutboxEvent.objects.filter(aggregate_id=row.aggregate_id).values_list("event_type", flat=True)) == [
        "ORDER_CREATED"
    ]


@pytest.mark.django_db
class TestProducedEventsConform:
    def test_order_created_from_a_real_checkout(self, api_client):
        row, correlation_id = place_order(api_client, "contract-checkout")

        value = assert_conforms(row)

        order = Order.objects.get(id=row.aggregate_id)
        assert (value["orderNumber"], value["subtotal"]) == (order.order_number, f"{order.subtotal:.2f}")
        assert len(value["items"]) == 2 and value["correlationId"] == correlation_id

    def test_payment_completed_success_and_failed_from_real_processing(self, api_client, payment_provider):
        paid, _ = place_order(api_client, "contract-paid")
        process_order_created_message(order_created_message(paid))
        payment_provider.faults(decline_rate=1.0)
        declined, _ = place_order(api_client, "contract-declined")
        process_order_created_message(order_created_message(declined))

        success = assert_conforms(payment_event(paid.aggregate_id, "PAYMENT_COMPLETED"))
        failed = assert_conforms(payment_event(declined.aggregate_id, "PAYMENT_COMPLETED"))

        assert (success["status"], success["failureReason"]) == ("SUCCESS", None)
        assert success["externalTransactionId"].startswith("ch_")
        assert (failed["status"], failed["failureReason"]) == ("FAILED", "Your card was declined.")
        assert failed["externalTransactionId"].startswith("ch_")  # the provider's failed charge


@pytest.mark.django_db
def test_payment_refunded_from_a_real_refund(api_client, manager_client):
    """Given a charge taken for an order a manager then cancels, the refund is announced per the contract."""
    row, _ = place_order(api_client, "contract-refund")
    order = Order.objects.get(id=row.aggregate_id)
    payment_charge(idempotency_key=str(order.id), amount=order.subtotal)
    response = manager_client.post(f"/api/v1/orders/{order.order_number}/cancel", {"reason": "no"}, format="json")
    assert response.status_code == 200, response.content

    assert order_payment_refund(order_id=order.id, reason="order cancelled").refunded

    value = assert_conforms(payment_event(order.id, "PAYMENT_REFUNDED"))
    assert (value["status"], value["refundReason"], value["amount"]) == ("REFUNDED", "order cancelled", f"{order.subtotal:.2f}")


def _without(payload: dict, *path: str) -> dict:
    changed = copy.deepcopy(payload)
    node = changed
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return changed


def _with(payload: dict, value: Any, *path: str | int) -> dict:
    changed = copy.deepcopy(payload)
    node = changed
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return changed


def invalid_variants(payload: dict) -> dict[str, dict]:
    """Hand-made breaches of OrderCreated 1.0, each one change away from a real event."""
    variants = {
        "money-as-a-float": _with(payload, 19.99, "subtotal"),
        "money-with-one-place": _with(payload, "19.9", "subtotal"),
        "price-as-a-number": _with(payload, 5, "items", 0, "priceSnapshot"),
        "no-items": _with(payload, [], "items"),
        "zero-quantity": _with(payload, 0, "items", 0, "quantity"),
        "order-id-not-a-uuid": _with(payload, "order-42", "orderId"),
        "event-id-a-number": _with(payload, 42, "eventId"),
        "timestamp-not-utc": _with(payload, "2026-01-31T12:00:00+01:00", "timestamp"),
        "correlation-id-a-number": _with(payload, 7, "correlationId"),
        "an-undocumented-field": _with(payload, "express", "shippingSpeed"),
        "an-undocumented-address-field": _with(payload, "x", "customer", "shippingAddress", "floor"),
        "a-bad-phone": _with(payload, "call me", "customer", "phone"),
        "an-unknown-version": _with(payload, "1.1", "eventVersion"),
        "event-type-a-list": _with(payload, ["ORDER_CREATED"], "eventType"),
    }
    for field in payload:
        variants[f"without-{field}"] = _without(payload, field)
    for field in payload["customer"]:
        variants[f"customer-without-{field}"] = _without(payload, "customer", field)
    for field in payload["items"][0]:
        variants[f"item-without-{field}"] = _without(payload, "items", 0, field)
    return variants


@pytest.mark.django_db
def test_the_consumer_refuses_what_the_schema_refuses_and_leaves_the_order_alone(api_client):
    row, _ = place_order(api_client, "contract-refusals")
    schema = published_validator("order-created-1.0.json")
    assert list(schema.iter_errors(row.payload)) == []  # the starting point is valid, so each variant breaks one rule

    for name, value in invalid_variants(row.payload).items():
        message = order_created_message(row)
        message = type(message)(**{**message.__dict__, "value": json.dumps(value).encode()})

        assert list(schema.iter_errors(value)), f"{name}: the schema accepts it"
        with pytest.raises(PoisonMessage):
            process_order_created_message(message)
        assert_untouched(row)


@pytest.mark.django_db(transaction=True)
def test_the_consumer_process_dead_letters_schema_breaches_and_pays_the_valid_order(api_client, consumers, broker):
    """Given schema breaches for one order and then a valid event for another, on one partition,
    when the real consumer runs, then each breach is dead-lettered byte for byte, the first order is
    untouched, and the valid order is paid."""
    victim, _ = place_order(api_client, "contract-victim")
    valid, _ = place_order(api_client, "contract-valid")
    variants = invalid_variants(victim.payload)
    chosen = ["money-as-a-float", "no-items", "an-undocumented-field", "without-customer"]
    breaches = [json.dumps(variants[name]).encode() for name in chosen]
    victim_headers = [(name, str(value).encode()) for name, value in victim.headers.items()]
    valid_headers = [(name, str(value).encode()) for name, value in valid.headers.items()]
    OutboxEvent.objects.all().delete()  # the test publishes them itself, in this order
    produce(
        broker.bootstrap,
        ORDERS_CREATED,
        [(0, victim.key.encode(), value, victim_headers) for value in breaches]
        + [(0, valid.key.encode(), json.dumps(valid.payload).encode(), valid_headers)],
    )

    consumers()

    wait_for(lambda: Order.objects.get(id=valid.aggregate_id).status == "PAID", timeout=60, what="the valid order paid")
    order = Order.objects.get(id=victim.aggregate_id)
    assert (order.status, order.payment_status) == ("PENDING", "PENDING")
    assert not PaymentTransaction.objects.filter(order=order).exists()
    assert_not_charged(order)
    assert not ProcessedEvent.objects.filter(event_id=victim.event_id).exists()
    dead = sorted(read_topic(broker.bootstrap, ORDERS_CREATED_DLQ), key=lambda r: int(header(r, "dlt-original-offset")))
    assert [record.value for record in dead] == breaches
    for record in dead:
        assert header(record, "dlt-exception-fqcn") == "orders.processing.PoisonMessage"
        assert header(record, "dlt-exception-message").startswith("malformed ORDER_CREATED 1.0 at $")
        assert header(record, "event_id") == str(victim.event_id)
    assert DeadLetter.objects.count() == len(breaches)
