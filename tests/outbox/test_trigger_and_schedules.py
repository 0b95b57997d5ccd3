"""The relay wake-up on the real Redis and Celery broker, the periodic jobs and their schedules."""
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg2
import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from prometheus_client import REGISTRY

import outbox.relay
import outbox.run
from celery_app import app
from checkout.models import Cart, CartItem
from checkout.services import carts_expired_delete
from checkout.tasks import cart_cleanup
from outbox.models import OutboxEvent, OutboxStatus
from outbox.run import outbox_relay_run
from outbox.tasks import purge_published
from outbox.trigger import FLAG_KEY, LINGER_LOCK_KEY, outbox_relay_flag_clear, outbox_relay_wake, outbox_trigger_reset
from tests.api import add_to_cart, checkout
from tests.factories import ProductFactory
from tests.support import free_port, outbox_test_event

# The default queue: kombu's Redis transport keeps it as a list of this name.
CELERY_QUEUE = "celery"

SCHEDULES = {
    "idempotency-cleanup": "checkout.idempotency_cleanup",
    "cart-cleanup": "checkout.cart_cleanup",
    "outbox-sweep": "outbox.relay",
    "outbox-requeue-failed": "outbox.requeue_failed",
    "outbox-purge-published": "outbox.purge_published",
}


def setup_schedules() -> None:
    call_command("setup_schedules", stdout=io.StringIO())


@pytest.fixture
def broker_queue():
    """The real broker's default queue, empty at the start and left empty."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    flags = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete(CELERY_QUEUE)
    flags.delete(FLAG_KEY)
    outbox_trigger_reset()
    yield broker
    outbox_trigger_reset()
    broker.delete(CELERY_QUEUE)
    flags.delete(FLAG_KEY)
    broker.close()
    flags.close()


def relay_messages(broker: redis.Redis) -> list[str]:
    """The task names of the messages waiting on the default queue."""
    return [json.loads(raw)["headers"]["task"] for raw in broker.lrange(CELERY_QUEUE, 0, -1)]


@pytest.mark.django_db
class TestSchedules:
    def test_setup_schedules_is_idempotent(self):
        setup_schedules()
        tasks_after_first = PeriodicTask.objects.count()
        intervals_after_first = IntervalSchedule.objects.count()

        setup_schedules()

        assert PeriodicTask.objects.count() == tasks_after_first
        assert IntervalSchedule.objects.count() == intervals_after_first
        assert dict(PeriodicTask.objects.filter(name__in=SCHEDULES).values_list("name", "task")) == SCHEDULES
        assert set(PeriodicTask.objects.filter(name__in=SCHEDULES).values_list("enabled", flat=True)) == {True}

    def test_every_scheduled_task_is_a_registered_celery_task(self):
        app.loader.import_default_modules()
        setup_schedules()

        scheduled = set(PeriodicTask.objects.filter(name__in=SCHEDULES).values_list("task", flat=True))

        assert scheduled == set(SCHEDULES.values())
        assert {task for task in scheduled if task not in app.tasks} == set()

    def test_each_run_expires_after_its_interval(self):
        setup_schedules()

        sweep = PeriodicTask.objects.select_related("interval").get(name="outbox-sweep")

        assert (sweep.interval.every, sweep.interval.period) == (settings.OUTBOX_SWEEP_INTERVAL_SECONDS, "seconds")
        assert sweep.expire_seconds == sweep.interval.every
        for task in PeriodicTask.objects.filter(name__in=SCHEDULES).select_related("interval"):
            assert task.expire_seconds == task.interval.every, task.name

    def test_a_changed_interval_converges_without_duplicates(self, settings):
        setup_schedules()
        count = PeriodicTask.objects.count()
        settings.OUTBOX_SWEEP_INTERVAL_SECONDS = 7

        setup_schedules()

        sweep = PeriodicTask.objects.select_related("interval").get(name="outbox-sweep")
        assert PeriodicTask.objects.count() == count
        assert (sweep.interval.every, sweep.expire_seconds) == (7, 7)


class TestWakeCoalescing:
    def test_a_burst_of_wakes_enqueues_one_relay_run(self, broker_queue):
        for _ in range(5):
            outbox_relay_wake()

        assert relay_messages(broker_queue) == ["outbox.relay"]
        flags = redis.Redis.from_url(settings.REDIS_URL)
        assert 0 < flags.ttl(FLAG_KEY) <= 5  # a run that never starts does not block wakes forever
        flags.close()

    def test_a_wake_after_the_run_cleared_the_flag_enqueues_the_next_run(self, broker_queue):
        for _ in range(5):
            outbox_relay_wake()
        outbox_relay_flag_clear()  # what the relay task does before it claims rows

        outbox_relay_wake()
        outbox_relay_wake()

        assert relay_messages(broker_queue) == ["outbox.relay", "outbox.relay"]


@pytest.mark.kafka
@pytest.mark.django_db
class TestHandOver:
    def test_two_runs_out_of_time_together_each_enqueue_a_successor(self, broker_queue):
        # given: a backlog, and a commit's wake-up holding the flag
        for sequence in range(3):
            outbox_test_event(str(uuid.uuid4()), sequence)
        outbox_relay_wake()
        assert relay_messages(broker_queue) == ["outbox.relay"]

        # when: the worker's two runs both run out of time with work left
        outbox_relay_run(batch_size=1, time_budget_seconds=0)
        outbox_relay_run(batch_size=1, time_budget_seconds=0)

        # then: each has a successor, so the backlog keeps both processes
        assert relay_messages(broker_queue) == ["outbox.relay"] * 3


def _published(row_id: int, within_seconds: float) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if OutboxEvent.objects.get(id=row_id).status == OutboxStatus.PUBLISHED:
            return True
        time.sleep(0.02)
    return False


def _staying_run() -> threading.Thread:
    """A relay run that stays up to 1.5 s for nudges, started in a thread with a database connection of its own."""

    def run() -> None:
        try:
            outbox_relay_run(batch_size=10, time_budget_seconds=20, linger_seconds=1.5)
        finally:
            connection.close()

    runner = threading.Thread(target=run)
    runner.start()
    return runner


@contextmanager
def _staying_after(first: OutboxEvent) -> Iterator[threading.Thread]:
    """A staying run (`_staying_run`) once it has published `first` and waits for nudges; joined at the end."""
    runner = _staying_run()
    try:
        assert _published(first.id, within_seconds=10)
        time.sleep(0.3)  # its drain ends: it waits
        yield runner
    finally:
        runner.join(timeout=30)


@pytest.mark.kafka
@pytest.mark.django_db(transaction=True)
class TestLingering:
    def test_a_run_that_published_takes_the_next_commits_rows_without_a_task_then_ends_when_they_stop(
        self, broker_queue, settings
    ):
        # given: a commit whose wake-up enqueued a run, and the worker running it with a linger
        settings.OUTBOX_TRIGGER_ON_COMMIT = True
        first = outbox_test_event(str(uuid.uuid4()))
        assert relay_messages(broker_queue) == ["outbox.relay"]
        broker_queue.delete(CELERY_QUEUE)  # the worker took it

        with _staying_after(first) as runner:
            # when: more rows commit while it lingers
            later = [outbox_test_event(str(uuid.uuid4())) for _ in range(3)]

            # then: the same run publishes them at once, and their wake-ups enqueue nothing
            assert all(_published(row.id, within_seconds=1.0) for row in later)
            assert runner.is_alive()
            assert relay_messages(broker_queue) == []
            flags = redis.Redis.from_url(settings.REDIS_URL)
            assert flags.exists(FLAG_KEY) and flags.exists(LINGER_LOCK_KEY)

            # and: with no more commits it ends after its linger, letting go of the flag and the lock
            quiet_since = time.monotonic()
            runner.join(timeout=10)
            assert not runner.is_alive()
            assert 1.0 <= time.monotonic() - quiet_since < 5.0
            assert not flags.exists(FLAG_KEY) and not flags.exists(LINGER_LOCK_KEY)
            flags.close()

    def test_a_run_that_cannot_stay_leaves_the_flag_to_the_one_that_does(self, broker_queue, settings):
        # given: a run that stays
        settings.OUTBOX_TRIGGER_ON_COMMIT = True
        first = outbox_test_event(str(uuid.uuid4()))
        broker_queue.delete(CELERY_QUEUE)
        with _staying_after(first):
            # when: another run (the beat's sweep) drains beside it and ends
            swept = outbox_test_event(str(uuid.uuid4()))
            broker_queue.delete(CELERY_QUEUE)
            outbox_relay_run(batch_size=10, time_budget_seconds=5, linger_seconds=1.5)
            assert _published(swept.id, within_seconds=1.0)  # by either run

            # then: the flag is still the staying run's, so the next commits nudge it and enqueue no task
            # (had the sweep cleared it, each commit would enqueue a run, and each such run clear it again)
            flags = redis.Redis.from_url(settings.REDIS_URL)
            assert flags.get(FLAG_KEY) == flags.get(LINGER_LOCK_KEY) is not None
            flags.close()
            later = [outbox_test_event(str(uuid.uuid4())) for _ in range(3)]
            assert all(_published(row.id, within_seconds=1.0) for row in later)
            assert relay_messages(broker_queue) == []

    def test_its_drains_claim_once_per_nudge_and_a_row_they_left_behind_goes_out_before_it_ends(
        self, broker_queue, settings, monkeypatch
    ):
        # given: a run that stays, claims and drains counted as it makes them
        settings.OUTBOX_TRIGGER_ON_COMMIT = True
        claims: list[int] = []
        drains: list[tuple[bool, int]] = []  # (rescan, the claims it made), as each ends
        real_claim, real_drain = outbox.relay._claim, outbox.run.outbox_drain

        def counted_claim(*args, **kwargs):
            claims.append(1)
            return real_claim(*args, **kwargs)

        def counted_drain(**kwargs):
            before = len(claims)
            try:
                return real_drain(**kwargs)
            finally:
                drains.append((kwargs.get("rescan", True), len(claims) - before))

        monkeypatch.setattr(outbox.relay, "_claim", counted_claim)
        monkeypatch.setattr(outbox.run, "outbox_drain", counted_drain)
        first = outbox_test_event(str(uuid.uuid4()))
        # and: a committed row another session holds locked, as a relay that will give it back would
        held = outbox_test_event(str(uuid.uuid4()))
        other = psycopg2.connect(**connection.get_connection_params())
        other.cursor().execute(f"SELECT id FROM {OutboxEvent._meta.db_table} WHERE id = %s FOR UPDATE", [held.id])
        broker_queue.delete(CELERY_QUEUE)

        try:
            with _staying_after(first) as runner:
                # when: rows commit one at a time while it stays
                staying_from = len(drains)
                for _ in range(3):
                    row = outbox_test_event(str(uuid.uuid4()))
                    assert _published(row.id, within_seconds=1.0)
                time.sleep(0.3)
                staying = [made for _, made in drains[staying_from:]]
                # then: each drain of the stay claimed once: no second pass's empty claim per nudge
                assert len(staying) >= 2 and staying == [1] * len(staying)
                assert OutboxEvent.objects.get(id=held.id).status == OutboxStatus.PENDING

                # when: the held row is given back, with no commit to nudge the run
                other.rollback()
                # then: it goes out before the run ends: the run's final drain passes over everything again
                runner.join(timeout=10)
                assert not runner.is_alive()
                assert OutboxEvent.objects.get(id=held.id).status == OutboxStatus.PUBLISHED
                assert drains[-1][0] is True
        finally:
            other.close()


    def test_the_commits_of_one_gather_window_go_out_in_one_claim(self, broker_queue, settings, monkeypatch):
        # given: a run that stays, gathering for 0.3 s after a nudge, its claims counted with the rows each took
        settings.OUTBOX_TRIGGER_ON_COMMIT = True
        settings.OUTBOX_RELAY_GATHER_SECONDS = 0.3
        claimed: list[int] = []
        real_claim = outbox.relay._claim

        def counted_claim(*args, **kwargs):
            result = real_claim(*args, **kwargs)
            claimed.append(len(result[0]))
            return result

        monkeypatch.setattr(outbox.relay, "_claim", counted_claim)
        first = outbox_test_event(str(uuid.uuid4()))
        broker_queue.delete(CELERY_QUEUE)
        with _staying_after(first):
            staying_from = len(claimed)

            # when: three rows commit one after another, each nudging it
            later = [outbox_test_event(str(uuid.uuid4())) for _ in range(3)]

            # then: they go out together, in the one claim after the first nudge's gathering
            assert all(_published(row.id, within_seconds=2.0) for row in later)
            assert [taken for taken in claimed[staying_from:] if taken] == [3]


class TestWakeWithRedisDown:
    def test_wake_returns_quickly_without_raising_and_enqueues_nothing(self, broker_queue, settings):
        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
        outbox_trigger_reset()

        started = time.monotonic()
        outbox_relay_wake()
        elapsed = time.monotonic() - started

        assert elapsed < 1.0
        assert broker_queue.llen(CELERY_QUEUE) == 0

    @pytest.mark.django_db(transaction=True)
    def test_checkout_still_commits_its_order_and_outbox_row(self, broker_queue, settings, api_client, session_id):
        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        settings.OUTBOX_TRIGGER_ON_COMMIT = True
        outbox_trigger_reset()
        product = ProductFactory(inventory_quantity=5)
        assert add_to_cart(api_client, session_id, product.id, 1).status_code == 200

        started = time.monotonic()
        response = checkout(api_client, session_id, str(uuid.uuid4()))
        elapsed = time.monotonic() - started

        assert response.status_code == 201
        assert elapsed < 2.0  # the dead Redis costs no timeout worth noticing
        row = OutboxEvent.objects.get()
        assert (row.status, row.event_type, row.payload["orderNumber"]) == (
            OutboxStatus.PENDING,
            "ORDER_CREATED",
            response.json()["orderNumber"],
        )
        assert broker_queue.llen(CELERY_QUEUE) == 0  # left for the sweep


def _cart_cleanup_deleted() -> float:
    return REGISTRY.get_sample_value("cart_cleanup_deleted_total") or 0.0


@pytest.mark.django_db
class TestCartCleanup:
    def _carts(self, api_client) -> tuple[list[str], list[str]]:
        product = ProductFactory(inventory_quantity=100)
        expired = [f"expired-{uuid.uuid4().hex}" for _ in range(3)]
        live = [f"live-{uuid.uuid4().hex}" for _ in range(2)]
        for session in expired + live:
            assert add_to_cart(api_client, session, product.id, 2).status_code == 200
        Cart.objects.filter(session_id__in=expired).update(expires_at=timezone.now() - timedelta(seconds=1))
        return expired, live

    def test_deletes_expired_carts_with_their_items_and_keeps_live_ones(self, api_client):
        expired, live = self._carts(api_client)

        deleted = carts_expired_delete(batch_size=2)

        assert deleted == 3
        assert set(Cart.objects.values_list("session_id", flat=True)) == set(live)
        assert set(CartItem.objects.values_list("cart__session_id", flat=True)) == set(live)
        assert CartItem.objects.count() == 2

    def test_celery_task_runs_the_cleanup_and_counts_it(self, api_client):
        expired, live = self._carts(api_client)
        before = _cart_cleanup_deleted()

        cart_cleanup.apply()  # in-process, as a worker would run it

        assert set(Cart.objects.values_list("session_id", flat=True)) == set(live)
        assert CartItem.objects.filter(cart__isnull=True).count() == 0
        assert CartItem.objects.count() == 2
        assert _cart_cleanup_deleted() - before == 3


@pytest.mark.django_db
class TestPurgeTask:
    def _event(self, aggregate_id: str) -> OutboxEvent:
        return outbox_test_event(aggregate_id)

    def test_deletes_published_rows_past_the_retention_only(self, settings):
        settings.OUTBOX_RETENTION_HOURS = 1
        old, recent, pending, failed = (self._event(name) for name in ("old", "recent", "pending", "failed"))
        two_hours_ago = timezone.now() - timedelta(hours=2)
        OutboxEvent.objects.filter(id=old.id).update(status=OutboxStatus.PUBLISHED, published_at=two_hours_ago)
        OutboxEvent.objects.filter(id=recent.id).update(
            status=OutboxStatus.PUBLISHED, published_at=timezone.now() - timedelta(minutes=30)
        )
        # Rows still to publish are kept however old they are.
        OutboxEvent.objects.filter(id=pending.id).update(created_at=two_hours_ago)
        OutboxEvent.objects.filter(id=failed.id).update(status=OutboxStatus.FAILED, created_at=two_hours_ago)

        purge_published.apply()

        assert set(OutboxEvent.objects.values_list("id", flat=True)) == {recent.id, pending.id, failed.id}
