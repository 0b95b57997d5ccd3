"""Money is never kept for an order that is not PAID: refunds on cancel, retried by the payment audit.

The audit itself (its watermark, what it refunds and when) is tested in tests/orders/test_audit.py.
"""
import threading

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from orders.audit import payment_charges_audit
from orders.models import Order, PaymentTransaction
from orders.processing import Outcome, process_order_created_message
from orders.services import order_payment_refund
from outbox.models import OutboxEvent
from payments.gateway import ChargeOutcome, payment_charge
from tests.orders.conftest import order_created_message
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = {"paymentService": {"retry": {"initial_seconds": 0.01}}}


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def payment_events(order_id, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order_id), event_type=event_type))


def audit(**overrides) -> object:
    arguments = {"grace_seconds": 0, "unsettled_wait_seconds": 3600, "max_attempts": 3, "backoff_base_seconds": 60}
    return payment_charges_audit(**{**arguments, **overrides})


def charged(order_id) -> None:
    order = Order.objects.get(id=order_id)
    assert payment_charge(idempotency_key=str(order.id), amount=order.subtotal).outcome is ChargeOutcome.APPROVED


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.RESILIENCE_POLICIES = FAST_RETRIES


@pytest.fixture
def payment_provider(payment_provider_of_its_own):
    """The audit reads every charge the provider holds: a ledger of this test's own."""
    return payment_provider_of_its_own


def test_an_order_cancelled_while_its_payment_is_in_flight_is_refunded_once(
    place_order, manager_client, payment_provider
):
    """Given a payment the provider takes a second to answer, when a manager cancels meanwhile,
    then the order stays CANCELLED and its charge is given back, once, however often it is retried."""
    row = place_order()
    order_id = row.aggregate_id
    payment_provider.faults(latency_seconds=1.0)  # the provider answers slowly: a window to cancel in
    refunded_before = counter("payment_refunds_total", outcome="refunded")
    outcome: list[Outcome] = []

    def consume() -> None:
        try:
            outcome.append(process_order_created_message(order_created_message(row)))
        finally:
            connection.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        wait_for(lambda: Order.objects.get(id=order_id).status == "PROCESSING", timeout=10, what="the payment in flight")
        order_number = Order.objects.get(id=order_id).order_number
        response = manager_client.post(
            f"/api/v1/orders/{order_number}/cancel", {"reason": "changed my mind"}, format="json"
        )
        assert response.status_code == 200, response.content
    finally:
        consumer.join(timeout=30)

    assert outcome == [Outcome.SKIPPED]
    order = Order.objects.get(id=order_id)
    assert (order.status, order.payment_status) == ("CANCELLED", "REFUNDED")
    charge = payment_provider.charge(order_id)
    assert charge["status"] == "succeeded" and charge["refunded"] and charge["amount_refunded"] == charge["amount"]
    payment = PaymentTransaction.objects.get(order=order)
    assert payment.status == "REFUNDED" and payment.refund_external_transaction_id.startswith("re_")
    assert payment.external_transaction_id == charge["id"]
    assert payment_events(order_id, "PAYMENT_COMPLETED") == []
    [refunded] = payment_events(order_id, "PAYMENT_REFUNDED")
    assert refunded.topic == "payments.completed" and refunded.key == str(order_id)
    assert refunded.payload["status"] == "REFUNDED"
    assert refunded.payload["refundTransactionId"] == payment.refund_external_transaction_id
    assert refunded.payload["amount"] == f"{order.subtotal:.2f}"
    assert refunded.headers["event_id"] == refunded.payload["eventId"] == str(refunded.event_id)
    assert counter("payment_refunds_total", outcome="refunded") == refunded_before + 1

    # Retried: by hand, and by the audit twice. The provider is asked again, gives nothing more back.
    payment_provider.faults_reset()
    again = order_payment_refund(order_id=order.id, reason="retried")
    audit()
    audit()

    assert again.refunded and again.refund_id == payment.refund_external_transaction_id  # the first refund, replayed
    assert payment_provider.charge(order_id)["amount_refunded"] == charge["amount"]
    assert len(payment_events(order_id, "PAYMENT_REFUNDED")) == 1
    assert PaymentTransaction.objects.get(order=order).refund_reason == "order cancelled while its payment was in flight"
    assert counter("payment_refunds_total", outcome="refunded") == refunded_before + 1


def test_a_refund_whose_answer_was_lost_is_retried_without_refunding_twice(place_order, payment_provider):
    """Given a charge recorded by the provider only (the payer stopped), and the order cancelled,
    when the audit's refund is reset after the provider refunded, then the retry gets the same refund back."""
    row = place_order()
    order_id = row.aggregate_id
    charged(order_id)
    Order.objects.filter(id=order_id).update(status="CANCELLED")
    # Seeded: the first refund request is refunded and then reset, the second answered.
    payment_provider.faults(reset_after_charge_rate=0.5, seed=1)

    report = audit()

    assert report.refunded == 1
    charge = payment_provider.charge(order_id)
    assert charge["refunded"] and charge["amount_refunded"] == charge["amount"]
    payment = PaymentTransaction.objects.get(order_id=order_id)
    assert (payment.status, payment.attempt_count, payment.external_transaction_id) == ("REFUNDED", 0, charge["id"])
    assert len(payment_events(order_id, "PAYMENT_REFUNDED")) == 1
    payment_provider.faults_reset()
    assert audit().refunded == 0
    assert len(payment_events(order_id, "PAYMENT_REFUNDED")) == 1
