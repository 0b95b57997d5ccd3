"""Money is never kept for an order that is not PAID: refunds on cancel, and the payment audit."""
import threading

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from orders import payments
from orders.models import MockGatewayCharge, Order, PaymentTransaction
from orders.payment_faults import payment_faults_set
from orders.payments import PaymentTimeout, payment_charge
from orders.processing import Outcome, process_order_created_message
from orders.reconciliation import payment_charges_audit
from orders.services import order_payment_refund
from outbox.models import OutboxEvent
from tests.orders.conftest import order_created_message
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FAST_RETRIES = {"paymentService": {"retry": {"initial_seconds": 0.01}}}


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def ledger(order_id) -> MockGatewayCharge:
    return MockGatewayCharge.objects.get(idempotency_key=str(order_id))


def payment_events(order_id, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order_id), event_type=event_type))


def audit(**overrides) -> object:
    arguments = {"grace_seconds": 0, "lookback_hours": 1, "max_attempts": 3, "backoff_base_seconds": 60}
    return payment_charges_audit(**{**arguments, **overrides})


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.RESILIENCE_POLICIES = FAST_RETRIES


@pytest.fixture(autouse=True)
def provider_ledger_of_this_test():
    """The provider's ledger is committed outside test transactions: start the audit from an empty one."""
    MockGatewayCharge.objects.all().delete()


def test_an_order_cancelled_while_its_payment_is_in_flight_is_refunded_once(
    place_order, manager_client, payment_faults
):
    """Given a payment the provider takes a second to answer, when a manager cancels meanwhile,
    then the order stays CANCELLED and its charge is given back, once, however often it is retried."""
    row = place_order()
    order_id = row.aggregate_id
    payment_faults_set(latency_seconds=1.0)  # the provider answers slowly: a window to cancel in
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
    charge = ledger(order_id)
    assert charge.approved and charge.refunded_at is not None and charge.refund_requests == 1
    payment = PaymentTransaction.objects.get(order=order)
    assert payment.status == "REFUNDED" and payment.refund_external_transaction_id == charge.refund_id
    assert payment.external_transaction_id == charge.external_transaction_id
    assert payment_events(order_id, "PAYMENT_COMPLETED") == []
    [refunded] = payment_events(order_id, "PAYMENT_REFUNDED")
    assert refunded.topic == "payments.completed" and refunded.key == str(order_id)
    assert refunded.payload["status"] == "REFUNDED" and refunded.payload["refundTransactionId"] == charge.refund_id
    assert refunded.payload["amount"] == f"{order.subtotal:.2f}"
    assert refunded.headers["event_id"] == refunded.payload["eventId"] == str(refunded.event_id)
    assert counter("payment_refunds_total", outcome="refunded") == refunded_before + 1

    # Retried: by hand, and by the audit twice. The provider is asked again, gives nothing more back.
    payment_faults_set(latency_seconds=0.01)
    first_refund_at = charge.refunded_at
    again = order_payment_refund(order_id=order.id, reason="retried")
    audit()
    audit()

    assert again.refunded and again.refund_id == charge.refund_id
    charge.refresh_from_db()
    assert charge.refunded_at == first_refund_at and charge.refund_requests == 2  # the audit skips refunded charges
    assert len(payment_events(order_id, "PAYMENT_REFUNDED")) == 1
    assert PaymentTransaction.objects.get(order=order).refund_reason == "order cancelled while its payment was in flight"
    assert counter("payment_refunds_total", outcome="refunded") == refunded_before + 1


def test_a_refund_whose_answer_was_lost_is_retried_without_refunding_twice(place_order, payment_faults):
    """Given a charge recorded by the provider only (the payer stopped), and the order cancelled,
    when the audit's refund times out after the provider refunded, then the retry gets the same refund back."""
    row = place_order()
    order_id = row.aggregate_id
    assert payment_charge(idempotency_key=str(order_id), amount=Order.objects.get(id=order_id).subtotal).approved
    Order.objects.filter(id=order_id).update(status="CANCELLED")
    real_refund = payments.MockPaymentGateway.refund
    answers_lost = []

    def refund_then_lose_the_answer(self, **kwargs):
        result = real_refund(self, **kwargs)
        if not answers_lost:
            answers_lost.append(result)
            raise PaymentTimeout("the refund's answer never arrived")
        return result

    payments.MockPaymentGateway.refund = refund_then_lose_the_answer
    try:
        report = audit()
    finally:
        payments.MockPaymentGateway.refund = real_refund

    assert report.refunded == 1
    charge = ledger(order_id)
    assert charge.refund_requests == 2 and charge.refunded_at is not None
    payment = PaymentTransaction.objects.get(order_id=order_id)
    assert (payment.status, payment.attempt_count, payment.external_transaction_id) == (
        "REFUNDED", 0, charge.external_transaction_id
    )  # fmt: skip
    assert len(payment_events(order_id, "PAYMENT_REFUNDED")) == 1
    assert audit().refunded == 0
    charge.refresh_from_db()
    assert charge.refund_requests == 2


def test_the_audit_refunds_only_charges_without_a_paid_order_past_the_grace_period(place_order, payment_faults):
    paid, failed, processing, young = (place_order() for _ in range(4))
    assert process_order_created_message(order_created_message(paid)) == Outcome.PROCESSED
    for row in (failed, processing, young):
        order = Order.objects.get(id=row.aggregate_id)
        assert payment_charge(idempotency_key=str(order.id), amount=order.subtotal).approved
    # The payer gave up on a slow provider (FAILED) while the provider went on and charged.
    Order.objects.filter(id=failed.aggregate_id).update(status="FAILED")
    Order.objects.filter(id__in=[processing.aggregate_id, young.aggregate_id]).update(status="PROCESSING")
    Order.objects.filter(id=young.aggregate_id).update(status="CANCELLED")
    MockGatewayCharge.objects.exclude(idempotency_key=young.aggregate_id).update(
        created_at=MockGatewayCharge.objects.get(idempotency_key=young.aggregate_id).created_at.replace(year=2000)
    )
    # A charge under a key that names no order of ours.
    stray = payment_charge(idempotency_key="stray-charge", amount=payments.Decimal("5.00"))
    assert stray.approved
    MockGatewayCharge.objects.filter(idempotency_key="stray-charge").update(
        created_at=MockGatewayCharge.objects.get(idempotency_key=paid.aggregate_id).created_at
    )
    unmatched_before = counter("payment_unmatched_charges_total", action="refunded")

    report = payment_charges_audit(grace_seconds=60, lookback_hours=24 * 365 * 30, max_attempts=3, backoff_base_seconds=60)

    assert (report.refunded, report.deferred) == (2, 1)
    refunded = set(MockGatewayCharge.objects.filter(refunded_at__isnull=False).values_list("idempotency_key", flat=True))
    assert refunded == {failed.aggregate_id, "stray-charge"}
    assert Order.objects.get(id=failed.aggregate_id).payment_status == "REFUNDED"
    assert Order.objects.get(id=paid.aggregate_id).payment_status == "SUCCESS"
    assert counter("payment_unmatched_charges_total", action="refunded") == unmatched_before + 2


def test_a_refund_that_keeps_failing_is_flagged_for_a_human(place_order, payment_faults):
    row = place_order()
    order = Order.objects.get(id=row.aggregate_id)
    assert payment_charge(idempotency_key=str(order.id), amount=order.subtotal).approved
    Order.objects.filter(id=order.id).update(status="CANCELLED")
    payment_faults_set(success_rate=0.0, failure_kind="connection")  # the provider refuses every call
    flagged_before = counter("payment_unmatched_charges_total", action="flagged")
    failed_before = counter("payment_refunds_total", outcome="failed")

    for _ in range(2):
        assert audit(max_attempts=2).failed == 1
        Order.objects.filter(id=order.id).update(reconcile_next_at=None)  # its backoff has passed
    report = audit(max_attempts=2)

    assert (report.flagged, report.failed) == (1, 0)
    order.refresh_from_db()
    assert order.flagged_at is not None and "did not refund" in order.flag_reason
    assert order.reconcile_attempts == 2
    assert ledger(order.id).refunded_at is None
    assert counter("payment_unmatched_charges_total", action="flagged") == flagged_before + 1
    assert counter("payment_refunds_total", outcome="failed") == failed_before + 2
    assert audit(max_attempts=2).flagged == 0  # flagged once, then left to the human
