"""OrderCreated → payment over HTTP → PAID/FAILED/in doubt + PaymentCompleted, exactly once, behind the payment policy."""
import json
import time
from datetime import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from catalog.models import Product
from orders.models import Order, OrderItem, PaymentTransaction, ProcessedEvent
from orders.processing import Outcome, PoisonMessage, order_created_parse, process_order_created_message
from outbox.models import OutboxEvent
from payments.gateway import payment_charge
from resilience.breaker import State
from resilience.policies import breaker_for, breakers_reset
from tests.orders.conftest import order_created_message

pytestmark = pytest.mark.django_db


def payment_completed(order: Order) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(event_type="PAYMENT_COMPLETED", aggregate_id=str(order.id)))


@pytest.fixture
def charges(payment_provider):
    def count(order: Order, status: str = "succeeded") -> int:
        """Charges the provider holds for the order (its ledger is its own, in its own process)."""
        return sum(1 for charge in payment_provider.charges(str(order.id)) if charge["status"] == status)

    return count


def duplicates() -> float:
    return REGISTRY.get_sample_value("orders_consumer_duplicates_total") or 0.0


class TestPaid:
    def test_order_created_pays_and_publishes_payment_completed(self, place_order, api_client):
        row = place_order()

        assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        order = Order.objects.get(id=row.aggregate_id)
        assert (order.status, order.payment_status) == ("PAID", "SUCCESS")
        payment = PaymentTransaction.objects.get(order=order)
        assert payment.attempt_count == 1 and payment.external_transaction_id.startswith("ch_")
        [event] = payment_completed(order)
        assert event.topic == "payments.completed" and event.key == str(order.id)
        payload = event.payload
        assert set(payload) == {
            "eventId", "eventType", "eventVersion", "timestamp", "correlationId", "orderId", "orderNumber",
            "paymentTransactionId", "status", "amount", "paymentMethod", "externalTransactionId", "failureReason",
        }  # fmt: skip
        assert payload["eventType"] == "PAYMENT_COMPLETED" and payload["eventVersion"] == "1.0"
        assert payload["status"] == "SUCCESS" and payload["failureReason"] is None
        assert payload["amount"] == f"{order.subtotal:.2f}"
        assert payload["correlationId"] == row.payload["correlationId"]
        assert payload["paymentTransactionId"] == str(payment.id)
        assert ProcessedEvent.objects.get(event_id=row.event_id).outcome == "PROCESSED"
        body = api_client.get(f"/api/v1/orders/{order.order_number}").json()
        assert (body["status"], body["paymentStatus"]) == ("PAID", "SUCCESS")

    def test_a_first_delivery_looks_its_event_up_once_under_the_lock_that_records_it(self, place_order):
        row = place_order()

        with CaptureQueriesContext(connection) as queries:
            assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        table = ProcessedEvent._meta.db_table
        lookups = [q["sql"] for q in queries if q["sql"].startswith("SELECT") and table in q["sql"]]
        assert len(lookups) == 1  # none while the locked order was PENDING: nothing can have applied it

    def test_a_first_delivery_claims_its_order_in_one_statement_and_settles_it_in_one_transaction(self, place_order):
        row = place_order()

        with CaptureQueriesContext(connection) as queries:
            assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        statements = [q["sql"].split()[0].upper() for q in queries]
        # The claim: PENDING to PROCESSING, counted, read back. The settling, under the order's lock:
        # the lock, the processed-event lookup, the payment, the order, the processed event, PaymentCompleted.
        # (The suite's own transaction turns the settling's into a savepoint.)
        assert statements == ["UPDATE", "SAVEPOINT", "SELECT", "SELECT", "INSERT", "UPDATE", "INSERT", "INSERT", "RELEASE"]

    def test_a_second_delivery_changes_nothing_and_is_counted(self, place_order, charges):
        row = place_order()
        process_order_created_message(order_created_message(row))
        before = duplicates()

        assert process_order_created_message(order_created_message(row, offset=7)) == Outcome.DUPLICATE

        order = Order.objects.get(id=row.aggregate_id)
        assert PaymentTransaction.objects.filter(order=order).count() == 1
        assert charges(order) == 1
        assert len(payment_completed(order)) == 1
        assert duplicates() == before + 1

    def test_resuming_after_a_crash_between_payment_and_record_does_not_charge_twice(self, place_order, charges):
        row = place_order()
        order = Order.objects.get(id=row.aggregate_id)
        # The first delivery got as far as PROCESSING and the provider's charge, then died.
        Order.objects.filter(id=order.id).update(status="PROCESSING")
        first = payment_charge(idempotency_key=str(order.id), amount=order.subtotal)

        assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        assert charges(order) == 1
        payment = PaymentTransaction.objects.get(order=order)
        assert payment.external_transaction_id == first.charge_id


class TestNotPaid:
    def test_a_decline_fails_the_order_without_retrying_and_gives_back_exactly_its_stock(
        self, place_order, payment_provider, charges
    ):
        payment_provider.faults(decline_rate=1.0)
        row = place_order()
        [item] = OrderItem.objects.filter(order_id=row.aggregate_id)
        product = Product.objects.get(id=item.product_id)
        # Checkout took the item's units: 10 on hand, 2 bought.
        assert (product.inventory_quantity, item.quantity) == (8, 2)

        process_order_created_message(order_created_message(row))

        order = Order.objects.get(id=row.aggregate_id)
        assert (order.status, order.payment_status, order.payment_unknown_since) == ("FAILED", "FAILED", None)
        payment = PaymentTransaction.objects.get(order=order)
        assert (payment.attempt_count, payment.failure_reason) == (1, "Your card was declined.")
        [event] = payment_completed(order)
        assert (event.payload["status"], event.payload["failureReason"]) == ("FAILED", "Your card was declined.")
        assert charges(order, "failed") == 1 and charges(order) == 0
        product.refresh_from_db()
        assert product.inventory_quantity == 10  # exactly the order's 2 units back, once
        # A redelivery gives nothing back twice.
        assert process_order_created_message(order_created_message(row, offset=3)) == Outcome.DUPLICATE
        product.refresh_from_db()
        assert product.inventory_quantity == 10

    def test_an_order_cancelled_meanwhile_is_recorded_and_skipped(self, place_order, charges):
        row = place_order()
        Order.objects.filter(id=row.aggregate_id).update(status="CANCELLED")

        assert process_order_created_message(order_created_message(row)) == Outcome.SKIPPED

        order = Order.objects.get(id=row.aggregate_id)
        assert order.status == "CANCELLED"
        assert not PaymentTransaction.objects.filter(order=order).exists()
        assert charges(order) == 0
        assert payment_completed(order) == []
        record = ProcessedEvent.objects.get(event_id=row.event_id)
        assert record.outcome == "SKIPPED" and "CANCELLED" in record.detail


class TestPaymentUnknown:
    def test_an_unknown_answer_leaves_the_order_in_doubt_not_failed(
        self, place_order, payment_provider, settings, charges, api_client
    ):
        settings.RESILIENCE_POLICIES = {"paymentService": {"timeout_seconds": 0.3, "retry": {"initial_seconds": 0.01}}}
        breakers_reset()
        payment_provider.faults(error_rate=1.0)
        row = place_order()
        stock = Product.objects.get(id=OrderItem.objects.get(order_id=row.aggregate_id).product_id).inventory_quantity

        assert process_order_created_message(order_created_message(row)) == Outcome.PAYMENT_UNKNOWN

        order = Order.objects.get(id=row.aggregate_id)
        assert (order.status, order.payment_status, order.payment_charge_requests) == ("PROCESSING", "PENDING", 1)
        assert order.payment_unknown_since is not None
        assert not PaymentTransaction.objects.filter(order=order).exists()
        assert payment_completed(order) == []  # no final state yet, so no PaymentCompleted
        record = ProcessedEvent.objects.get(event_id=row.event_id)
        assert record.outcome == "PAYMENT_UNKNOWN" and "after 3 attempt(s)" in record.detail
        assert Product.objects.get(id=OrderItem.objects.get(order=order).product_id).inventory_quantity == stock
        body = api_client.get(f"/api/v1/orders/{order.order_number}").json()
        assert body["status"] == "PROCESSING"
        assert datetime.fromisoformat(body["paymentUnknownSince"].replace("Z", "+00:00")) == order.payment_unknown_since
        assert charges(order) == 0

    def test_timeouts_retry_open_the_breaker_and_an_open_breaker_is_not_a_decline(
        self, place_order, payment_provider, settings
    ):
        """The seed's payment-timeout test, with docs/contract.md's numbers and short waits: nothing is FAILED."""
        settings.RESILIENCE_POLICIES = {
            "paymentService": {
                # Limits far above the healthy provider's few ms, so a busy
                # machine (the suite runs in parallel) does not make a
                # healthy trial call slow and reopen the breaker.
                "timeout_seconds": 0.4,
                "retry": {"initial_seconds": 0.01},
                "breaker": {"open_seconds": 1.0, "slow_call_seconds": 0.4},
            }
        }
        breakers_reset()
        payment_provider.faults(hang_rate=1.0)  # no answer, no charge
        slow = [place_order() for _ in range(3)]
        for row in slow[:2]:
            assert process_order_created_message(order_created_message(row)) == Outcome.PAYMENT_UNKNOWN
        first, second = [ProcessedEvent.objects.get(event_id=row.event_id) for row in slow[:2]]
        assert "after 3 attempt(s)" in first.detail  # retried, then given up: unknown, not declined
        # The fifth failed call (this order's second attempt) opened the breaker.
        assert "circuit open" in second.detail
        assert breaker_for("paymentService").state() == State.OPEN

        assert process_order_created_message(order_created_message(slow[2])) == Outcome.PAYMENT_UNKNOWN
        assert "circuit open" in ProcessedEvent.objects.get(event_id=slow[2].event_id).detail
        for row in slow:
            order = Order.objects.get(id=row.aggregate_id)
            assert order.status == "PROCESSING" and order.payment_unknown_since is not None
            assert payment_completed(order) == [] and payment_provider.charges(str(order.id)) == []

        # After the open period the breaker lets trials through; a healthy provider closes it.
        time.sleep(1.1)
        payment_provider.faults_reset()
        healthy = [place_order() for _ in range(3)]
        for row in healthy:
            process_order_created_message(order_created_message(row))
        assert breaker_for("paymentService").state() == State.CLOSED
        assert {Order.objects.get(id=row.aggregate_id).status for row in healthy} == {"PAID"}


class TestPoison:
    @pytest.mark.parametrize(
        "value,reason",
        [
            (b"\xff{not json", "not JSON"),
            (json.dumps({"eventType": "ORDER_CREATED", "eventVersion": "1.0", "eventId": "x"}).encode(), "malformed"),
            (json.dumps({"eventType": "ORDER_SHIPPED", "eventVersion": "1.0"}).encode(), "unsupported"),
            (json.dumps({"eventType": "ORDER_CREATED", "eventVersion": "2.0"}).encode(), "unsupported"),
            (json.dumps([1, 2]).encode(), "JSON object"),
            (None, "tombstone"),
        ],
    )
    def test_undecodable_invalid_or_unknown_events_are_poison(self, place_order, value, reason):
        message = order_created_message(place_order())
        poisoned = type(message)(**{**message.__dict__, "value": value})
        with pytest.raises(PoisonMessage, match=reason):
            order_created_parse(poisoned)
        assert not PaymentTransaction.objects.exists() and not ProcessedEvent.objects.exists()


def test_processed_events_are_purged_after_30_days(settings, place_order):
    from django.utils import timezone

    from orders.tasks import purge_processed_events

    old, recent = place_order(), place_order()
    for row in (old, recent):
        process_order_created_message(order_created_message(row))
    ProcessedEvent.objects.filter(event_id=old.event_id).update(processed_at=timezone.now() - timezone.timedelta(days=31))

    purge_processed_events.apply()

    assert list(ProcessedEvent.objects.values_list("event_id", flat=True)) == [recent.event_id]
