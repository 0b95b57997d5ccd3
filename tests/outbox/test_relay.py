"""The relay against a real Kafka-protocol broker: schema, order, retries, FAILED and requeue."""
import json
import queue
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import psycopg2
import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from messaging.contract.events import ORDERS_CREATED
from messaging.kafka.producer import event_producer_reset
from orders.models import Order
from outbox import floor, relay
from outbox.models import OutboxEvent, OutboxStatus
from outbox.relay import outbox_batch_publish, outbox_drain
from outbox.run import outbox_relay_run
from outbox.services import outbox_events_republish, outbox_failed_requeue, outbox_published_purge, outbox_rows_requeue
from resilience.breaker import BreakerConfig, CircuitBreaker, MemoryStore, State
from resilience.policies import breaker_for
from tests.api import add_to_cart, checkout
from tests.factories import ProductFactory
from tests.support import free_port, header, outbox_test_event, read_topic

pytestmark = pytest.mark.django_db


def drain() -> None:
    outbox_drain(batch_size=settings.OUTBOX_BATCH_SIZE, time_budget_seconds=10)


def records_of(event_ids: set[str], topic: str = ORDERS_CREATED, bootstrap: str | None = None) -> list:
    bootstrap = bootstrap or settings.KAFKA_BOOTSTRAP_SERVERS[0]
    return [record for record in read_topic(bootstrap, topic) if header(record, "event_id") in event_ids]


def event(aggregate_id: str, sequence: int, topic: str = ORDERS_CREATED) -> OutboxEvent:
    return outbox_test_event(aggregate_id, sequence, topic)


@pytest.mark.kafka
class TestPublishing:
    def test_checkout_event_is_published_once_with_spec_schema_key_and_headers(self, api_client, session_id):
        product = ProductFactory(inventory_quantity=5)
        add_to_cart(api_client, session_id, product.id, 1)
        key = str(uuid.uuid4())
        response = checkout(api_client, session_id, key)
        assert response.status_code == 201

        drain()

        row = OutboxEvent.objects.get()
        assert row.status == OutboxStatus.PUBLISHED and row.published_at is not None
        order = Order.objects.get()
        [record] = records_of({str(row.event_id)})
        assert record.key == str(order.id).encode()
        assert json.loads(record.value) == row.payload
        assert json.loads(record.value)["orderNumber"] == order.order_number
        assert header(record, "event_type") == "ORDER_CREATED"
        assert header(record, "correlation_id") == response["X-Correlation-ID"]

        # An idempotent retry of the checkout publishes nothing new.
        assert checkout(api_client, session_id, key)["Idempotent-Replayed"] == "true"
        drain()
        assert OutboxEvent.objects.count() == 1
        assert len(records_of({str(row.event_id)})) == 1

    def test_per_order_events_arrive_in_creation_order(self):
        aggregates = [str(uuid.uuid4()) for _ in range(5)]
        rows = [event(aggregate, sequence) for sequence in range(4) for aggregate in aggregates]
        outbox_drain(batch_size=3, time_budget_seconds=10)  # small batches: order must hold across them
        assert OutboxEvent.objects.filter(status=OutboxStatus.PUBLISHED).count() == 20
        records = records_of({str(row.event_id) for row in rows})
        for aggregate in aggregates:
            sequences = [json.loads(r.value)["sequence"] for r in records if r.key == aggregate.encode()]
            assert sequences == [0, 1, 2, 3]

    def test_an_event_waiting_for_retry_holds_back_its_order_only(self):
        waiting, flowing = str(uuid.uuid4()), str(uuid.uuid4())
        first = event(waiting, 0)
        second = event(waiting, 1)
        other = event(flowing, 0)
        OutboxEvent.objects.filter(id=first.id).update(attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1))

        report = outbox_batch_publish(batch_size=100)

        assert report.published == 1
        statuses = dict(OutboxEvent.objects.values_list("id", "status"))
        assert statuses == {first.id: "PENDING", second.id: "PENDING", other.id: "PUBLISHED"}
        assert OutboxEvent.objects.get(id=second.id).attempts == 0  # held back, not attempted


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def wedged_orders(count: int) -> list[OutboxEvent]:
    """Orders whose first event is FAILED and whose next one waits behind it (a refund behind a failed payment)."""
    held = []
    for _ in range(count):
        aggregate = str(uuid.uuid4())
        failed = event(aggregate, 0)
        OutboxEvent.objects.filter(id=failed.id).update(status=OutboxStatus.FAILED, attempts=5, last_error="boom")
        held.append(event(aggregate, 1))
    return held


@pytest.mark.kafka
class TestHeldBackRows:
    """Rows waiting behind an earlier unpublished row of their order never take a batch's place."""

    def test_held_back_rows_do_not_fill_a_batch(self):
        held = wedged_orders(10)
        fresh = event(str(uuid.uuid4()), 0)

        report = outbox_batch_publish(batch_size=5)

        assert (report.claimed, report.published, report.held_back) == (1, 1, 0)
        assert OutboxEvent.objects.get(id=fresh.id).status == OutboxStatus.PUBLISHED
        rows = OutboxEvent.objects.filter(id__in=[row.id for row in held])
        assert set(rows.values_list("status", "attempts")) == {(OutboxStatus.PENDING, 0)}

    def test_a_half_open_trial_reaches_the_breaker_past_held_back_rows(self):
        # given: the breaker opened a while ago, and ten wedged orders ahead of a new checkout's row
        clock = Clock()
        config = BreakerConfig(open_seconds=30, half_open_calls=3)
        breaker = CircuitBreaker("relay-trial", config, MemoryStore(), clock=clock)
        breaker.record_outcomes(breaker.acquire(), successes=0, failures=5)
        assert breaker.state() == State.OPEN
        clock.now += 31
        held = wedged_orders(10)
        fresh = event(str(uuid.uuid4()), 0)

        # when: three sweeps, each a half-open trial of at most ten rows
        reports = [outbox_batch_publish(batch_size=1000, breaker=breaker) for _ in range(3)]

        # then: the first trial published the new row; the wedged rows were never claimed
        outcomes = [(report.claimed, report.published, report.breaker_open) for report in reports]
        assert outcomes == [(1, 1, False), (0, 0, False), (0, 0, False)]
        assert OutboxEvent.objects.get(id=fresh.id).status == OutboxStatus.PUBLISHED
        assert breaker.state() == State.HALF_OPEN  # one good trial of three counted
        assert breaker.store.read("relay-trial")["trial_results"] == ["OK"]
        held_statuses = OutboxEvent.objects.filter(id__in=[row.id for row in held]).values_list("status", flat=True)
        assert set(held_statuses) == {"PENDING"}


@pytest.mark.kafka
class TestFailures:
    def test_a_refused_row_holds_back_its_order_is_never_requeued_by_the_job_and_an_operator_requeues_it(
        self, settings, admin_client
    ):
        aggregate = str(uuid.uuid4())
        big = event(aggregate, 0)
        OutboxEvent.objects.filter(id=big.id).update(payload={"sequence": 0, "blob": "x" * 5000})
        after = event(aggregate, 1)
        settings.KAFKA_MAX_REQUEST_BYTES = 1000  # the broker's limit, for this test
        event_producer_reset()

        report = outbox_batch_publish(batch_size=100)

        big.refresh_from_db()
        after.refresh_from_db()
        assert (big.status, big.attempts) == ("REFUSED", 1)
        assert "MessageSizeTooLarge" in big.last_error
        assert (after.status, after.attempts) == ("PENDING", 0)  # never overtakes the refused event
        assert report.failed == 1 and report.published == 0

        # The periodic requeue leaves it alone: sending it again cannot help.
        assert outbox_failed_requeue(batch_size=100) == 0
        drain()
        big.refresh_from_db()
        after.refresh_from_db()
        assert (big.status, big.attempts) == ("REFUSED", 1)
        assert after.status == "PENDING"  # still held back behind the refused row

        # An operator removes the cause, then requeues it from the admin.
        settings.KAFKA_MAX_REQUEST_BYTES = 1048576
        event_producer_reset()
        response = admin_client.post(
            "/admin/outbox/outboxevent/", {"action": "requeue_failed", "_selected_action": [big.id], "index": 0}
        )
        assert response.status_code == 302
        drain()

        assert set(OutboxEvent.objects.values_list("status", flat=True)) == {"PUBLISHED"}
        records = records_of({str(big.event_id), str(after.event_id)})
        assert [json.loads(r.value)["sequence"] for r in records] == [0, 1]

    def test_transient_failures_retry_with_backoff_then_fail_after_five_attempts(self, settings, fast_policies):
        live = settings.KAFKA_BOOTSTRAP_SERVERS
        settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{free_port()}"]  # nothing listens there
        # Isolate the retry path: a breaker that never opens in this test.
        settings.RESILIENCE_POLICIES["kafkaPublisher"]["breaker"]["minimum_calls"] = 1000
        from resilience.policies import breakers_reset

        breakers_reset()
        row = event(str(uuid.uuid4()), 0)

        attempts_seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            attempted_at = timezone.now()
            outbox_batch_publish(batch_size=10)
            row.refresh_from_db()
            if not attempts_seen or attempts_seen[-1] != row.attempts:
                attempts_seen.append(row.attempts)
                if row.status == "PENDING":
                    # Backed off, not hammered: equal jitter waits at least half
                    # of the policy's 0.05 s after the failed attempt.
                    assert row.next_attempt_at >= attempted_at + timedelta(seconds=0.025)
            if row.status == "FAILED":
                break
            time.sleep(0.05)

        assert attempts_seen == [1, 2, 3, 4, 5]
        assert row.status == "FAILED" and row.last_error

        settings.KAFKA_BOOTSTRAP_SERVERS = live
        event_producer_reset()
        outbox_failed_requeue(batch_size=10)
        drain()
        row.refresh_from_db()
        assert row.status == "PUBLISHED"
        assert len(records_of({str(row.event_id)})) == 1

    def test_open_breaker_stops_attempts(self, settings, fast_policies):
        settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{free_port()}"]
        rows = [event(str(uuid.uuid4()), 0) for _ in range(6)]

        first = outbox_batch_publish(batch_size=100)
        assert first.retrying == 6
        assert breaker_for("kafkaPublisher").state() == State.OPEN
        time.sleep(0.2)  # the rows' backoff has passed; only the breaker holds them

        second = outbox_batch_publish(batch_size=100)

        assert second.breaker_open is True
        assert sorted(OutboxEvent.objects.filter(id__in=[r.id for r in rows]).values_list("attempts", flat=True)) == [1] * 6


class TestHousekeeping:
    def test_purge_deletes_only_old_published_rows(self):
        old, recent, pending = event("a", 0), event("b", 0), event("c", 0)
        OutboxEvent.objects.filter(id=old.id).update(status="PUBLISHED", published_at=timezone.now() - timedelta(days=8))
        OutboxEvent.objects.filter(id=recent.id).update(status="PUBLISHED", published_at=timezone.now())
        assert outbox_published_purge(older_than=timedelta(days=7), batch_size=1) == 1
        assert set(OutboxEvent.objects.values_list("id", flat=True)) == {recent.id, pending.id}

    def test_republishing_leaves_refused_rows_for_an_operator(self):
        published, failed, refused = event("a", 0), event("b", 0), event("c", 0)
        OutboxEvent.objects.filter(id=published.id).update(status="PUBLISHED", published_at=timezone.now())
        OutboxEvent.objects.filter(id=failed.id).update(status="FAILED", attempts=5, last_error="timeout")
        OutboxEvent.objects.filter(id=refused.id).update(status="REFUSED", attempts=1, last_error="too large")

        assert outbox_events_republish(ids=[published.id, failed.id, refused.id]) == 2

        rows = {row["id"]: row for row in OutboxEvent.objects.values("id", "status", "attempts", "last_error")}
        assert [rows[published.id]["status"], rows[failed.id]["status"]] == ["PENDING", "PENDING"]
        assert rows[refused.id] == {"id": refused.id, "status": "REFUSED", "attempts": 1, "last_error": "too large"}


@contextmanager
def another_relay_holding(row: OutboxEvent):
    """A second session that has claimed `row` (FOR UPDATE), as another relay mid-batch has."""
    db = connection.settings_dict
    session = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"], port=db["PORT"] or 5432)
    try:
        with session.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {OutboxEvent._meta.db_table} WHERE id = %s FOR UPDATE", [row.id])
        yield
    finally:
        session.rollback()
        session.close()


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
class TestSeveralRelays:
    def test_a_drain_goes_on_past_rows_left_to_the_relay_holding_their_order(self):
        # given: another relay holds an order's first row; that order's second row, then another order's row
        held, free = str(uuid.uuid4()), str(uuid.uuid4())
        first, second, other = event(held, 0), event(held, 1), event(free, 0)

        # when: a drain of one-row batches runs meanwhile
        with another_relay_holding(first):
            report = outbox_drain(batch_size=1, time_budget_seconds=10)

        # then: the second row waits for the relay holding the first; the other order's row is out
        statuses = dict(OutboxEvent.objects.values_list("id", "status"))
        assert statuses == {first.id: "PENDING", second.id: "PENDING", other.id: "PUBLISHED"}
        assert report.deferred >= 1


class TestClaimFloor:
    def test_a_run_starts_past_published_rows_and_a_full_pass_still_finds_a_row_requeued_below(self, monkeypatch):
        monkeypatch.setattr(floor, "SETTLE_SECONDS", 0.0)
        monkeypatch.setattr(floor, "FULL_PASS_SECONDS", 3600.0)
        aggregate = str(uuid.uuid4())
        first, second = event(aggregate, 0), event(aggregate, 1)
        outbox_relay_run(batch_size=10, time_budget_seconds=10)  # the process's first run: a full pass
        assert floor.outbox_claim_floor() >= second.id  # nothing PENDING at or below it
        OutboxEvent.objects.filter(id=first.id).update(status=OutboxStatus.FAILED)
        outbox_rows_requeue(ids=[first.id])  # back to PENDING, below the floor

        outbox_relay_run(batch_size=10, time_budget_seconds=10)
        assert OutboxEvent.objects.get(id=first.id).status == OutboxStatus.PENDING  # past it: delayed, not lost

        monkeypatch.setattr(floor, "FULL_PASS_SECONDS", 0.0)
        outbox_relay_run(batch_size=10, time_budget_seconds=10)
        assert OutboxEvent.objects.get(id=first.id).status == OutboxStatus.PUBLISHED

    @pytest.mark.django_db(transaction=True)
    def test_a_floor_noted_while_a_transaction_held_lower_rows_stops_below_them(self, monkeypatch):
        # given: a transaction that wrote a row and stays open, as a long bulk write does
        monkeypatch.setattr(floor, "SETTLE_SECONDS", 0.0)
        monkeypatch.setattr(floor, "NOTE_EVERY_SECONDS", 0.0)
        monkeypatch.setattr(floor, "FULL_PASS_SECONDS", 3600.0)
        written, release = queue.Queue(), threading.Event()

        def long_write() -> None:
            try:
                with transaction.atomic():
                    written.put(outbox_test_event(str(uuid.uuid4())).id)
                    release.wait(30)
            finally:
                connection.close()

        writer = threading.Thread(target=long_write)
        writer.start()
        try:
            early = written.get(timeout=10)
            # and: a later row, committed and published by a run that notes a floor past it (the early row unseen)
            later = event(str(uuid.uuid4()), 0)
            outbox_relay_run(batch_size=10, time_budget_seconds=10)
            assert OutboxEvent.objects.get(id=later.id).status == OutboxStatus.PUBLISHED
            # then: while the transaction is open, the floor does not move up to that note
            assert floor.outbox_claim_floor() < early
        finally:
            release.set()
            writer.join(timeout=30)
        assert early < later.id and OutboxEvent.objects.get(id=early).status == OutboxStatus.PENDING

        # when: the next run starts, the transaction committed
        outbox_relay_run(batch_size=10, time_budget_seconds=10)

        # then: the floor stopped below the early row, which is out
        assert OutboxEvent.objects.get(id=early).status == OutboxStatus.PUBLISHED


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


@pytest.mark.django_db(transaction=False)
def test_a_claim_probes_each_claimed_order_once_whatever_the_statistics_say():
    # The backlog of an outage is written faster than autovacuum analyses it:
    # the statistics still say the outbox is empty when the relay claims.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxevent")
    orders = [str(uuid.uuid4()) for _ in range(200)]
    OutboxEvent.objects.bulk_create(
        OutboxEvent(
            event_id=uuid.uuid4(), aggregate_type="order", aggregate_id=order, topic="orders.created", key=order,
            event_type="TEST_EVENT", payload={"sequence": sequence}, headers={},
        )
        for sequence in range(5)
        for order in orders
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + relay._CLAIM_SQL.format(table=OutboxEvent._meta.db_table),
            {"now": timezone.now(), "limit": 1000, "after": 0},
        )
        plan = cursor.fetchone()[0]  # psycopg2 decodes the JSON plan
    nodes = list(_plan_nodes(plan[0]["Plan"]))
    probes = sum(node["Actual Loops"] for node in nodes if node.get("Alias") == "other")
    # One probe per claimed order; planned as an inner loop it was one per claimed row and order (200,000).
    assert 0 < probes <= len(orders)
