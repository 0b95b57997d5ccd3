"""OrderCreated → payment → PAID/FAILED + PaymentCompleted, exactly once, behind the payment policy."""
import json
import time

import pytest
from prometheus_client import REGISTRY

from orders import payments
from orders.models import MockGatewayCharge, Order, PaymentTransaction, ProcessedEvent
from orders.processing import Outcome, PoisonMessage, order_created_parse, process_order_created_message
from outbox.models import OutboxEvent
from resilience.breaker import State
from resilience.policies import breaker_for
from tests.orders.conftest import order_created_message

pytestmark = pytest.mark.django_db


def payment_completed(order: Order) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(event_type="PAYMENT_COMPLETED", aggregate_id=str(order.id)))


def charges(order: Order) -> int:
    """Charges the provider recorded for the order (its ledger is its own, outside our transactions)."""
    return MockGatewayCharge.objects.filter(idempotency_key=str(order.id)).count()


def duplicates() -> float:
    return REGISTRY.get_sample_value("orders_consumer_duplicates_total") or 0.0


class TestPaid:
    def test_order_created_pays_and_publishes_payment_completed(self, place_order, api_client):
        row = place_order()

        assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        order = Order.objects.get(id=row.aggregate_id)
        assert (order.status, order.payment_status) == ("PAID", "SUCCESS")
        payment = PaymentTransaction.objects.get(order=order)
        assert payment.attempt_count == 1 and payment.external_transaction_id.startswith("mock_")
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

    def test_a_second_delivery_changes_nothing_and_is_counted(self, place_order):
        row = place_order()
        process_order_created_message(order_created_message(row))
        before = duplicates()

        assert process_order_created_message(order_created_message(row, offset=7)) == Outcome.DUPLICATE

        order = Order.objects.get(id=row.aggregate_id)
        assert PaymentTransaction.objects.filter(order=order).count() == 1
        assert charges(order) == 1
        assert len(payment_completed(order)) == 1
        assert duplicates() == before + 1

    def test_resuming_after_a_crash_between_payment_and_record_does_not_charge_twice(self, place_order):
        row = place_order()
        order = Order.objects.get(id=row.aggregate_id)
        # The first delivery got as far as PROCESSING and the provider's charge, then died.
        Order.objects.filter(id=order.id).update(status="PROCESSING")
        first = payments.payment_charge(idempotency_key=str(order.id), amount=order.subtotal)

        assert process_order_created_message(order_created_message(row)) == Outcome.PROCESSED

        assert charges(order) == 1
        payment = PaymentTransaction.objects.get(order=order)
        assert payment.external_transaction_id == first.external_transaction_id


class TestNotPaid:
    def test_a_decline_fails_the_order_without_retrying(self, place_order, settings):
        settings.PAYMENT_MOCK_SUCCESS_RATE = 0.0
        settings.PAYMENT_MOCK_FAILURE_KIND = "decline"
        row = place_order()

        process_order_created_message(order_created_message(row))

        order = Order.objects.get(id=row.aggregate_id)
        assert (order.status, order.payment_status) == ("FAILED", "FAILED")
        payment = PaymentTransaction.objects.get(order=order)
        assert (payment.attempt_count, payment.failure_reason) == (1, "card declined")
        [event] = payment_completed(order)
        assert (event.payload["status"], event.payload["failureReason"]) == ("FAILED", "card declined")

    def test_an_order_cancelled_meanwhile_is_recorded_and_skipped(self, place_order):
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


class TestPaymentTimeouts:
    def test_timeouts_retry_open_the_breaker_fail_fast_then_recover(self, place_order, settings):
        """The seed's payment-timeout test, with docs/contract.md's numbers and short waits."""
        settings.RESILIENCE_POLICIES = {
            "paymentService": {
                # Limits far above the healthy gateway's 10 ms, so a busy
                # machine (the suite runs in parallel) does not make a
                # healthy trial call slow and reopen the breaker.
                "timeout_seconds": 0.4,
                "retry": {"initial_seconds": 0.01},
                "breaker": {"open_seconds": 1.0, "slow_call_seconds": 0.4},
            }
        }
        settings.PAYMENT_MOCK_LATENCY_SECONDS = 0.8  # above the time limit
        calls = []
        real_gateway = payments.payment_gateway

        def counting_gateway():
            gateway = real_gateway()
            original = gateway.charge

            def charge(**kwargs):
                calls.append(kwargs["idempotency_key"])
                return original(**kwargs)

            gateway.charge = charge
            return gateway

        payments.payment_gateway = counting_gateway
        try:
            slow = [place_order() for _ in range(3)]
            for row in slow[:2]:
                process_order_created_message(order_created_message(row))
            first, second = [PaymentTransaction.objects.get(order_id=row.aggregate_id) for row in slow[:2]]
            assert first.attempt_count == 3  # retried, then given up
            assert "unreachable after 3 attempt" in first.failure_reason
            # The fifth failed call (this order's second attempt) opened the breaker.
            assert second.attempt_count == 2 and "circuit open" in second.failure_reason
            assert breaker_for("paymentService").state() == State.OPEN

            calls_before = len(calls)
            process_order_created_message(order_created_message(slow[2]))
            fast_fail = PaymentTransaction.objects.get(order_id=slow[2].aggregate_id)
            assert len(calls) == calls_before  # the gateway was not called
            assert fast_fail.attempt_count == 0 and "circuit open" in fast_fail.failure_reason
            for row in slow:
                order = Order.objects.get(id=row.aggregate_id)
                assert order.status == "FAILED"
                [event] = payment_completed(order)
                assert event.payload["status"] == "FAILED" and event.payload["failureReason"]

            # After the open period the breaker lets trials through; a healthy gateway closes it.
            time.sleep(1.1)
            settings.PAYMENT_MOCK_LATENCY_SECONDS = 0.01
            healthy = [place_order() for _ in range(3)]
            for row in healthy:
                process_order_created_message(order_created_message(row))
            assert breaker_for("paymentService").state() == State.CLOSED
            assert {Order.objects.get(id=row.aggregate_id).status for row in healthy} == {"PAID"}
        finally:
            payments.payment_gateway = real_gateway


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
