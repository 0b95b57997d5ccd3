"""Reconciliation: every stuck order reaches a terminal state, paid at most once, or is flagged for a human."""
import json
import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from ecommerce.metrics import PlatformStateCollector
from messaging.contract.events import ORDERS_CREATED, PAYMENTS_COMPLETED
from messaging.kafka.producer import event_producer_reset
from orders.models import Order, PaymentTransaction
from orders.reconciliation import ReconcileReport, orders_reconcile
from orders.tasks import reconcile
from outbox.models import OutboxEvent
from outbox.relay import outbox_drain
from payments.gateway import ChargeOutcome, payment_charge, payment_lookup
from tests.support import ConsumerProcess, read_topic, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def relay() -> None:
    outbox_drain(batch_size=100, time_budget_seconds=10)


def reconciled(action: str) -> float:
    return REGISTRY.get_sample_value("orders_reconciled_total", {"action": action}) or 0.0


def charges(order_id) -> int:
    """Succeeded charges the provider holds under the order's key (its own ledger, over HTTP)."""
    found = payment_lookup(idempotency_key=str(order_id))
    assert found.known, found.reason
    return int(found.found is not None and found.found.status == "succeeded")


def take_payment_then_stop(row: OutboxEvent) -> None:
    """What a consumer that died mid-payment leaves: the order PROCESSING, the provider's charge taken, nothing recorded."""
    order = Order.objects.get(id=row.aggregate_id)
    Order.objects.filter(id=order.id).update(status="PROCESSING")
    assert payment_charge(idempotency_key=str(order.id), amount=order.subtotal).outcome is ChargeOutcome.APPROVED


def as_if_relayed(rows: list[OutboxEvent]) -> None:
    OutboxEvent.objects.filter(id__in=[row.id for row in rows]).update(status="PUBLISHED", published_at=timezone.now())


@pytest.mark.many_connections
def test_orders_whose_events_the_broker_lost_are_all_settled_once(place_order, broker, settings, tmp_path):
    """Given orders whose OrderCreated the broker acknowledged and then lost (SIGKILL, back empty),
    when the reconcile job runs, then each ends PAID or FAILED with one charge and one PaymentCompleted."""
    rows = [place_order() for _ in range(4)]
    relay()
    assert set(OutboxEvent.objects.filter(id__in=[row.id for row in rows]).values_list("status", flat=True)) == {"PUBLISHED"}
    assert {record.key.decode() for record in read_topic(broker.bootstrap, ORDERS_CREATED)} == {row.key for row in rows}
    take_payment_then_stop(rows[0])

    broker.restart()  # SIGKILL: every acknowledged event is gone; topics re-created empty
    event_producer_reset()
    assert read_topic(broker.bootstrap, ORDERS_CREATED) == []
    settings.ORDER_RECONCILE_AFTER_SECONDS = 1
    time.sleep(1.1)
    before = {action: reconciled(action) for action in ("republished", "payment_resumed", "flagged")}

    reconcile.apply()  # the beat job, as a worker would run it

    assert reconciled("republished") == before["republished"] + 3
    assert reconciled("payment_resumed") == before["payment_resumed"] + 1
    assert reconciled("flagged") == before["flagged"]
    # Republished unchanged: the same eventId in the payload and the event_id header.
    for row in rows[1:]:
        again = OutboxEvent.objects.get(id=row.id)
        assert again.status == "PENDING" and again.payload == row.payload and again.headers == row.headers
    relay()
    consumer = ConsumerProcess(bootstrap=broker.bootstrap, log_path=tmp_path / "consumer.log").start()
    try:
        wait_for(
            lambda: set(Order.objects.filter(id__in=[row.aggregate_id for row in rows]).values_list("status", flat=True))
            <= {"PAID", "FAILED"},
            timeout=60,
            what="every order to be settled",
        )
    finally:
        consumer.stop()
    relay()  # PaymentCompleted onto Kafka

    completed: dict[str, set[str]] = defaultdict(set)
    for record in read_topic(broker.bootstrap, PAYMENTS_COMPLETED):
        completed[record.key.decode()].add(json.loads(record.value)["eventId"])
    for row in rows:
        assert Order.objects.get(id=row.aggregate_id).status == "PAID"
        assert charges(row.aggregate_id) == 1
        assert PaymentTransaction.objects.filter(order_id=row.aggregate_id).count() == 1
        assert len(completed[row.aggregate_id]) == 1, completed
    assert orders_reconcile(older_than_seconds=0, max_attempts=3) == ReconcileReport()  # nothing left to do


def test_two_runs_at_once_drive_each_order_once(place_order):
    """Given stuck orders, when two reconcile runs start together, they split the orders: no order
    is republished or resumed twice, and no order is charged twice."""
    pending = [place_order() for _ in range(4)]
    processing = [place_order() for _ in range(2)]
    as_if_relayed(pending + processing)
    for row in processing:
        take_payment_then_stop(row)
    before = {action: reconciled(action) for action in ("republished", "payment_resumed")}
    start = threading.Barrier(2)
    reports: list[ReconcileReport] = []

    def run() -> None:
        try:
            start.wait(timeout=10)
            reports.append(orders_reconcile(older_than_seconds=0, max_attempts=3, batch_size=1))
        finally:
            connection.close()

    runs = [threading.Thread(target=run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=60)

    assert len(reports) == 2
    assert sum(report.republished for report in reports) == 4
    assert sum(report.payment_resumed for report in reports) == 2
    assert sum(report.left_to_outbox + report.errors for report in reports) == 0
    assert reconciled("republished") == before["republished"] + 4
    assert reconciled("payment_resumed") == before["payment_resumed"] + 2
    orders = Order.objects.filter(id__in=[row.aggregate_id for row in pending + processing])
    assert set(orders.values_list("reconcile_attempts", flat=True)) == {1}
    for row in processing:
        assert Order.objects.get(id=row.aggregate_id).status == "PAID"
        assert charges(row.aggregate_id) == 1
        assert OutboxEvent.objects.filter(aggregate_id=row.aggregate_id, event_type="PAYMENT_COMPLETED").count() == 1
    # Both again at once: every order is in its backoff, so nothing is driven.
    assert orders_reconcile(older_than_seconds=0, max_attempts=3) == ReconcileReport()


def _gauge(name: str, **labels: str) -> float:
    for family in PlatformStateCollector().collect():
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not exported")


def test_an_order_that_stays_stuck_is_retried_with_backoff_then_flagged(place_order, settings, admin_client):
    """Given an order whose OrderCreated is published but never applied, reconciliation re-drives it
    with a doubling backoff, flags it once the attempts are spent, and leaves it to a human."""
    settings.ORDER_RECONCILE_AFTER_SECONDS = 60
    row = place_order()
    order_id = row.aggregate_id
    as_if_relayed([row])
    Order.objects.filter(id=order_id).update(updated_at=timezone.now() - timedelta(minutes=5))
    assert _gauge("orders_stuck", status="PENDING") == 1
    assert _gauge("orders_stuck", status="PROCESSING") == 0
    flagged_gauge = _gauge("orders_flagged")
    flagged_before = reconciled("flagged")

    waits = []
    for attempt in (1, 2):
        started = timezone.now()
        assert orders_reconcile(older_than_seconds=60, max_attempts=2).republished == 1
        order = Order.objects.get(id=order_id)
        assert order.reconcile_attempts == attempt
        waits.append((order.reconcile_next_at - started).total_seconds())
        assert orders_reconcile(older_than_seconds=60, max_attempts=2) == ReconcileReport()  # in its backoff
        as_if_relayed([row])  # the relay sent it again; the consumer never applied it
        Order.objects.filter(id=order_id).update(reconcile_next_at=timezone.now() - timedelta(seconds=1))
    assert 60 <= waits[0] <= 121 and 120 <= waits[1] <= 241  # from the base (the threshold) up to twice it, then doubled

    assert orders_reconcile(older_than_seconds=60, max_attempts=2).flagged == 1

    order = Order.objects.get(id=order_id)
    assert order.flagged_at is not None and order.flag_reason == "still PENDING after 2 reconciliation attempt(s)"
    assert OutboxEvent.objects.get(id=row.id).status == "PUBLISHED"  # not sent a third time
    assert reconciled("flagged") == flagged_before + 1
    assert _gauge("orders_flagged") == flagged_gauge + 1
    Order.objects.filter(id=order_id).update(reconcile_next_at=None)
    assert orders_reconcile(older_than_seconds=60, max_attempts=2) == ReconcileReport()  # a human's now
    page = admin_client.get("/admin/orders/order/", {"flagged": "yes"})
    assert page.status_code == 200
    assert [o.id for o in page.context["cl"].result_list] == [order.id]
    assert admin_client.get("/admin/orders/order/", {"flagged": "no"}).context["cl"].result_count == 0

    response = admin_client.post(
        "/admin/orders/order/", {"action": "clear_flag", "_selected_action": [str(order.id)]}, follow=True
    )

    assert response.status_code == 200
    order.refresh_from_db()
    assert (order.flagged_at, order.reconcile_attempts) == (None, 0)
    assert orders_reconcile(older_than_seconds=60, max_attempts=2).republished == 1  # a fresh budget
