"""Unknown is not declined: payments in doubt are settled by the provider's word, over HTTP (issue 14).

The consumer's path (`process_order_created_message`) meets the fake
provider's real faults; reconciliation (`orders_reconcile`) then asks the
provider for the charge under the order's key.
"""
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from catalog.models import Product
from ecommerce.platform_state import orders_payment_in_doubt_count
from orders.models import Order, OrderItem, PaymentTransaction, ProcessedEvent
from orders.processing import Outcome, process_order_created_message
from orders.reconciliation import orders_reconcile
from outbox.models import OutboxEvent
from payments.gateway import payment_charge
from resilience.policies import breakers_reset
from tests.orders.conftest import order_created_message

pytestmark = pytest.mark.django_db

TIME_LIMIT_SECONDS = 0.3
MAX_CHARGES = 3


@pytest.fixture(autouse=True)
def fast_policy(settings):
    """A short time limit and quick retries; a breaker that stays closed so each attempt meets the provider."""
    settings.RESILIENCE_POLICIES = {
        "paymentService": {
            "timeout_seconds": TIME_LIMIT_SECONDS,
            "retry": {"initial_seconds": 0.01, "max_seconds": 0.02},
            "breaker": {"window_size": 100, "minimum_calls": 100},
        }
    }
    settings.PAYMENT_UNKNOWN_MAX_CHARGES = MAX_CHARGES
    breakers_reset()
    yield
    breakers_reset()


def reconcile() -> None:
    """One reconciliation run with every order due now (the backoff of earlier runs skipped)."""
    Order.objects.update(reconcile_next_at=None)
    orders_reconcile(older_than_seconds=0, max_attempts=10)


def events(order: Order, event_type: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type=event_type))


def in_doubt(place_order) -> Order:
    """An order whose payment the consumer could not settle: PROCESSING, in doubt, its event recorded."""
    row = place_order()
    assert process_order_created_message(order_created_message(row)) == Outcome.PAYMENT_UNKNOWN
    order = Order.objects.get(id=row.aggregate_id)
    assert (order.status, order.payment_status) == ("PROCESSING", "PENDING") and order.payment_unknown_since
    assert ProcessedEvent.objects.get(event_id=row.event_id).outcome == "PAYMENT_UNKNOWN"
    assert events(order, "PAYMENT_COMPLETED") == []
    return order


def held_stock(order: Order) -> int:
    product_id = OrderItem.objects.get(order=order).product_id
    return Product.objects.get(id=product_id).inventory_quantity


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"late_answer_rate": 1.0, "late_answer_seconds": TIME_LIMIT_SECONDS * 2}, id="answers-after-the-limit"),
        pytest.param({"reset_after_charge_rate": 1.0}, id="charges-then-resets"),
    ],
)
def test_a_charge_whose_answer_was_lost_ends_paid_with_one_charge(place_order, payment_provider, faults):
    payment_provider.faults(**faults)
    order = in_doubt(place_order)
    [charge] = payment_provider.charges(str(order.id))  # the provider did charge
    payment_provider.faults_reset()
    assert orders_payment_in_doubt_count() == 1

    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_unknown_since) == ("PAID", "SUCCESS", None)
    assert PaymentTransaction.objects.get(order=order).external_transaction_id == charge["id"]
    [completed] = events(order, "PAYMENT_COMPLETED")
    assert (completed.payload["status"], completed.payload["externalTransactionId"]) == ("SUCCESS", charge["id"])
    assert len(payment_provider.charges(str(order.id))) == 1
    assert orders_payment_in_doubt_count() == 0
    reconcile()  # settled: nothing more happens
    assert len(events(order, "PAYMENT_COMPLETED")) == 1


def test_a_hang_is_retried_and_failed_only_once_the_provider_confirms_no_charge(place_order, payment_provider):
    payment_provider.faults(hang_rate=1.0)  # no answer, and nothing charged
    order = in_doubt(place_order)
    stock = held_stock(order)
    quantity = OrderItem.objects.filter(order=order).aggregate(total=Sum("quantity"))["total"]

    # The provider cannot be asked: whatever the number of runs, the order is not failed.
    payment_provider.kill()  # the fixture starts it again
    for _ in range(MAX_CHARGES + 1):
        reconcile()
    order.refresh_from_db()
    assert (order.status, order.payment_charge_requests) == ("PROCESSING", 1)
    payment_provider.start()
    payment_provider.faults(hang_rate=1.0)

    # The provider says there is no charge: charged again under the same key, up to the limit.
    for requests in range(2, MAX_CHARGES + 1):
        reconcile()
        order.refresh_from_db()
        assert (order.status, order.payment_charge_requests) == ("PROCESSING", requests)
        assert order.payment_unknown_since is not None and payment_provider.charges(str(order.id)) == []

    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_unknown_since) == ("FAILED", "FAILED", None)
    reason = f"the payment provider confirms no charge after {MAX_CHARGES} charge request(s)"
    assert PaymentTransaction.objects.get(order=order).failure_reason == reason
    [completed] = events(order, "PAYMENT_COMPLETED")
    assert (completed.payload["status"], completed.payload["failureReason"]) == ("FAILED", reason)
    assert held_stock(order) == stock + quantity  # its items' stock is back, once
    reconcile()
    assert held_stock(order) == stock + quantity


def test_runs_the_provider_cannot_answer_spend_none_of_the_orders_budget(place_order, payment_provider):
    """A provider outage longer than the re-drive budget neither hands the order to a human nor pushes its next try out.

    Spent, those runs doubled the order's backoff each time: in a soak, orders
    in doubt through an hour of overlapping provider faults waited up to 30
    minutes after the provider came back, and the budget's end flags them.
    """
    payment_provider.faults(hang_rate=1.0)
    order = in_doubt(place_order)
    payment_provider.kill()  # the fixture starts it again
    threshold = 60
    for _ in range(4):
        Order.objects.update(reconcile_next_at=None, updated_at=timezone.now() - timedelta(hours=1))
        orders_reconcile(older_than_seconds=threshold, max_attempts=2)
    order.refresh_from_db()
    assert (order.status, order.flagged_at, order.reconcile_attempts) == ("PROCESSING", None, 0)
    assert order.reconcile_next_at - timezone.now() <= timedelta(seconds=2 * threshold)  # the first step

    payment_provider.start()
    payment_provider.faults_reset()
    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status, order.flagged_at) == ("PAID", "SUCCESS", None)
    assert len(payment_provider.charges(str(order.id))) == 1


def test_a_charge_found_for_an_order_cancelled_meanwhile_is_refunded_once(place_order, payment_provider, manager_client):
    payment_provider.faults(late_answer_rate=1.0, late_answer_seconds=TIME_LIMIT_SECONDS * 2)
    order = in_doubt(place_order)
    payment_provider.faults_reset()
    response = manager_client.post(f"/api/v1/orders/{order.order_number}/cancel", {"reason": "changed my mind"}, format="json")
    assert response.status_code == 200, response.content

    reconcile()
    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_unknown_since) == ("CANCELLED", "REFUNDED", None)
    [charge] = payment_provider.charges(str(order.id))
    assert (charge["refunded"], charge["amount_refunded"]) == (True, charge["amount"])
    payment = PaymentTransaction.objects.get(order=order)
    assert (payment.status, payment.external_transaction_id) == ("REFUNDED", charge["id"])
    assert payment.refund_external_transaction_id.startswith("re_")
    assert len(events(order, "PAYMENT_REFUNDED")) == 1 and events(order, "PAYMENT_COMPLETED") == []


def test_an_order_cancelled_in_doubt_without_a_charge_is_no_longer_in_doubt(place_order, payment_provider, manager_client):
    payment_provider.faults(error_rate=1.0)
    order = in_doubt(place_order)
    payment_provider.faults_reset()
    manager_client.post(f"/api/v1/orders/{order.order_number}/cancel", {"reason": "changed my mind"}, format="json")

    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status, order.payment_unknown_since) == ("CANCELLED", "PENDING", None)
    assert payment_provider.charges(str(order.id)) == []  # not charged again for a cancelled order
    assert not PaymentTransaction.objects.filter(order=order).exists()


def test_a_stuck_processing_order_with_a_declined_charge_fails_and_gives_its_stock_back(place_order, payment_provider):
    """The consumer stopped after the provider declined: the lookup finds the failed charge (no new charge)."""
    row = place_order()
    order = Order.objects.get(id=row.aggregate_id)
    Order.objects.filter(id=order.id).update(status="PROCESSING", updated_at=timezone.now())
    payment_provider.faults(decline_rate=1.0)
    payment_charge(idempotency_key=str(order.id), amount=order.subtotal)
    payment_provider.faults_reset()  # a new charge would now be approved
    stock = held_stock(order)

    reconcile()

    order.refresh_from_db()
    assert (order.status, order.payment_status) == ("FAILED", "FAILED")
    assert held_stock(order) == stock + 2
    assert ProcessedEvent.objects.get(event_id=row.event_id).outcome == "PROCESSED"  # a redelivery is a duplicate
    assert [charge["status"] for charge in payment_provider.charges(str(order.id))] == ["failed"]
