"""The resilience overview's figures against the real services, and the page when a source is down."""
import io
import socket
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from celery.signals import beat_init
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from celery_app import beat_started_at
from ecommerce.overview import (
    activity,
    breaker_states,
    consumer_lag,
    orders_stuck,
    outbox_failed,
    overview_snapshot,
    periodic_jobs,
)
from ecommerce.overview_figures import Unavailable
from messaging.contract.events import ORDERS_CREATED
from orders.models import Order, OrderStatus
from outbox.models import OutboxStatus
from resilience.breaker import State
from resilience.policies import breaker_for, breakers_reset
from tests.factories import UserFactory
from tests.ops.states import jobs_succeeded, order_aged, outbox_row
from tests.support import TcpProxy

pytestmark = pytest.mark.django_db

OVERVIEW = "/admin/resilience-overview/"


def changelist_rows(admin_client, url: str, *needles: str) -> set[str]:
    """Which of `needles` the changelist at `url` shows."""
    response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    return {needle for needle in needles if needle in content}


class TestAccess:
    def test_anonymous_visitor_is_sent_to_the_admin_login(self, client):
        response = client.get(OVERVIEW)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")

    def test_a_user_who_is_not_staff_is_sent_to_the_admin_login(self, client):
        user = UserFactory(manager=True)
        client.force_login(user)

        response = client.get(OVERVIEW)

        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")

    def test_staff_see_the_page_and_the_admin_index_links_to_it(self, admin_client):
        assert admin_client.get(OVERVIEW).status_code == 200
        assert f'href="{OVERVIEW}"' in admin_client.get("/admin/").content.decode()


class TestStuckOrders:
    def test_counts_pending_and_processing_unchanged_past_the_threshold_and_links_to_exactly_them(
        self, settings, admin_client
    ):
        settings.ORDER_RECONCILE_AFTER_SECONDS = 300
        stuck_pending = order_aged(OrderStatus.PENDING, age=timedelta(seconds=400))
        fresh_pending = order_aged(OrderStatus.PENDING, age=timedelta(seconds=200))
        stuck_processing = order_aged(OrderStatus.PROCESSING, age=timedelta(seconds=400))
        old_paid = order_aged(OrderStatus.PAID, age=timedelta(seconds=4000))

        figure = orders_stuck(now=timezone.now())

        assert figure.threshold_seconds == 300
        assert {status.status: status.count for status in figure.statuses} == {"PENDING": 1, "PROCESSING": 1}
        numbers = [o.order_number for o in (stuck_pending, fresh_pending, stuck_processing, old_paid)]
        pending_link, processing_link = (status.url for status in figure.statuses)
        assert changelist_rows(admin_client, pending_link, *numbers) == {stuck_pending.order_number}
        assert changelist_rows(admin_client, processing_link, *numbers) == {stuck_processing.order_number}

    def test_counts_payments_in_doubt_and_links_to_exactly_them(self, admin_client):
        in_doubt = order_aged(OrderStatus.PROCESSING, age=timedelta(seconds=10))
        Order.objects.filter(id=in_doubt.id).update(payment_unknown_since=timezone.now())
        settled = order_aged(OrderStatus.PROCESSING, age=timedelta(seconds=10))

        figure = orders_stuck(now=timezone.now())

        assert figure.in_doubt == 1
        assert changelist_rows(admin_client, figure.in_doubt_url, in_doubt.order_number, settled.order_number) == {
            in_doubt.order_number
        }


class TestOutboxGivenUp:
    def test_counts_failed_and_refused_rows_apart_and_links_to_exactly_each(self, admin_client):
        failed = outbox_row(OutboxStatus.FAILED)
        refused = [outbox_row(OutboxStatus.REFUSED) for _ in range(2)]
        pending = outbox_row(OutboxStatus.PENDING)

        figure = outbox_failed()

        assert (figure.failed, figure.refused) == (1, 2)
        ids = [row.aggregate_id for row in (failed, *refused, pending)]
        assert changelist_rows(admin_client, figure.url, *ids) == {failed.aggregate_id}
        assert changelist_rows(admin_client, figure.refused_url, *ids) == {row.aggregate_id for row in refused}


class TestBreakers:
    def test_each_breaker_reports_its_shared_state_and_since_when_its_document_says(self):
        changed_at = 1_790_000_000.0
        breaker_for("kafkaPublisher").store.update(
            "kafkaPublisher", lambda doc: doc.update(state=State.OPEN.value, opened_at=changed_at, changed_at=changed_at)
        )

        states = {breaker.name: breaker for breaker in breaker_states()}

        assert states["kafkaPublisher"].state == "OPEN"
        assert states["kafkaPublisher"].changed_at == datetime.fromtimestamp(changed_at, tz=dt_timezone.utc)
        assert states["paymentService"].state == "CLOSED"
        assert states["paymentService"].changed_at is None  # no document yet: since unknown
        assert "catalogQuery" not in states  # a policy without a breaker


class TestPeriodicJobs:
    def test_a_job_without_a_success_for_three_intervals_is_late(self):
        call_command("setup_schedules", stdout=io.StringIO())
        now = timezone.now()
        # Beat sent them all just now: what counts is that a worker finished them.
        PeriodicTask.objects.update(last_run_at=now)
        jobs_succeeded({"outbox.relay": now - timedelta(seconds=2), "outbox.vacuum": now - timedelta(minutes=10)})

        jobs = {job.task: job for job in periodic_jobs(now=now)}

        assert jobs["outbox.relay"].stale is False
        assert jobs["outbox.relay"].every_seconds == settings.OUTBOX_SWEEP_INTERVAL_SECONDS
        assert jobs["outbox.vacuum"].stale is True  # every 60 s, last succeeded 10 minutes ago
        assert jobs["outbox.purge_published"].stale is True  # never succeeded
        assert parse_qs(urlsplit(jobs["outbox.relay"].url).query) == {"task__exact": ["outbox.relay"]}

    def test_a_job_in_its_first_interval_since_beat_started_is_not_yet_due_not_late(self, settings):
        # Given beat started 10 minutes ago; the hourly purge last succeeded a day
        # before that, cart cleanup never did; the minutely vacuum has not succeeded since the start
        call_command("setup_schedules", stdout=io.StringIO())
        now = timezone.now()
        started = now - timedelta(minutes=10)
        jobs_succeeded(
            {"outbox.purge_published": started - timedelta(days=1), "outbox.vacuum": started - timedelta(hours=2),
             "outbox.relay": now - timedelta(seconds=2)},
            beat_started=started,
        )  # fmt: skip

        # When the overview reads the jobs
        jobs = {job.task: job for job in periodic_jobs(now=now)}

        # Then the hourly jobs wait for their first interval, the minutely one missed three runs of this start
        assert settings.OUTBOX_PURGE_INTERVAL_SECONDS == settings.CART_CLEANUP_INTERVAL_SECONDS == 3600
        for task in ("outbox.purge_published", "checkout.cart_cleanup", "checkout.idempotency_cleanup"):
            assert (jobs[task].not_yet_due, jobs[task].stale) == (True, False), task
        assert (jobs["outbox.vacuum"].not_yet_due, jobs["outbox.vacuum"].stale) == (False, True)
        assert (jobs["outbox.relay"].not_yet_due, jobs["outbox.relay"].stale) == (False, False)

        # And once their first interval has passed with no success, they are due; after three intervals, late
        an_hour_later = {job.task: job for job in periodic_jobs(now=started + timedelta(seconds=3601))}
        assert (an_hour_later["outbox.purge_published"].not_yet_due, an_hour_later["outbox.purge_published"].stale) == (
            False,
            False,
        )
        much_later = {job.task: job for job in periodic_jobs(now=started + timedelta(seconds=3 * 3600 + 1))}
        assert (much_later["outbox.purge_published"].not_yet_due, much_later["outbox.purge_published"].stale) == (
            False,
            True,
        )

    def test_beat_records_its_start_when_it_starts(self):
        jobs_succeeded({})
        before = time.time()

        beat_init.send(sender=None)  # what celery.beat.Service.start sends

        assert before <= beat_started_at() <= time.time()

    def test_the_overview_page_says_not_yet_due_for_a_job_in_its_first_interval(self, admin_client):
        call_command("setup_schedules", stdout=io.StringIO())
        jobs_succeeded({}, beat_started=timezone.now() - timedelta(seconds=20))

        response = admin_client.get(OVERVIEW)

        assert response.status_code == 200
        content = response.content.decode()
        row = content[content.index('data-task="outbox.purge_published"'):]
        row = row[: row.index("</tr>")]
        assert "not yet due" in row and "late" not in row
        vacuum = content[content.index('data-task="outbox.vacuum"'):]
        assert '<span class="badge">not yet due</span>' in vacuum[: vacuum.index("</tr>")]


class TestActivity:
    def test_counts_each_minute_of_the_last_hour(self):
        now = timezone.now().replace(second=30)
        for age in (timedelta(0), timedelta(0), timedelta(minutes=5), timedelta(minutes=90)):
            outbox_row(OutboxStatus.PUBLISHED, published_at=now - age)
        order_aged(OrderStatus.PAID, age=timedelta(minutes=1))

        figure = activity(now=now)

        published, checkouts, dead_letters = figure.series
        assert len(published.per_minute) == 60
        assert published.per_minute[-1] == 2 and published.per_minute[-6] == 1 and published.total == 3
        assert checkouts.per_minute[-2] == 1 and checkouts.total == 1
        assert dead_letters.total == 0


@pytest.mark.kafka
class TestConsumerLag:
    def test_lag_is_the_high_watermark_minus_the_groups_committed_offset_per_partition(self, broker, settings):
        producer = KafkaProducer(bootstrap_servers=[broker.bootstrap], acks="all")
        try:
            for partition, count in ((0, 5), (1, 2)):
                for _ in range(count):
                    producer.send(ORDERS_CREATED, partition=partition, value=b"{}").get(timeout=10)
        finally:
            producer.close()
        member = KafkaConsumer(
            bootstrap_servers=[broker.bootstrap], group_id=settings.ORDERS_CONSUMER_GROUP, enable_auto_commit=False
        )
        try:
            member.assign([TopicPartition(ORDERS_CREATED, 0)])
            member.commit({TopicPartition(ORDERS_CREATED, 0): OffsetAndMetadata(3, "", -1)})
        finally:
            member.close()

        figure = consumer_lag()

        # Partition 0: 5 written, 3 committed. Partition 1: never committed, so all 2 are behind.
        assert {p.partition: p.lag for p in figure.partitions} == {0: 2, 1: 2, 2: 0}
        assert figure.total == 4


class TestSourcesDown:
    """The page is needed most when something is down: each dead source costs about a second, not the page."""

    @pytest.fixture
    def redis_unreachable(self, settings):
        """The breaker store behind a proxy that is then cut: connections refused."""
        original = settings.RESILIENCE_REDIS_URL
        address = urlsplit(original)
        proxy = TcpProxy(address.hostname, address.port).start()
        settings.RESILIENCE_REDIS_URL = address._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
        breakers_reset()
        proxy.cut()
        try:
            yield
        finally:
            # Restored here, before other fixtures' teardowns wipe breaker keys through it.
            settings.RESILIENCE_REDIS_URL = original
            breakers_reset()

    @pytest.fixture
    def redis_hung(self, settings):
        """A peer that accepts connections and never answers, as a paused Redis does."""
        original = settings.RESILIENCE_REDIS_URL
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        settings.RESILIENCE_REDIS_URL = urlsplit(original)._replace(netloc=f"127.0.0.1:{silent.getsockname()[1]}").geturl()
        breakers_reset()
        try:
            yield
        finally:
            settings.RESILIENCE_REDIS_URL = original
            silent.close()
            breakers_reset()

    def assert_page_renders_without_the_dead_sources(self, admin_client, *, within: float) -> str:
        started = time.monotonic()
        response = admin_client.get(OVERVIEW)
        elapsed = time.monotonic() - started

        assert response.status_code == 200
        assert elapsed < within, f"the page took {elapsed:.1f}s with its sources down"
        snapshot = response.context["snapshot"]
        assert isinstance(snapshot.breakers, Unavailable)
        assert isinstance(snapshot.consumer_lag, Unavailable)
        # The database's figures are still there.
        assert snapshot.outbox_failed.failed == 1
        assert [s.count for s in snapshot.stuck_orders.statuses] == [1, 0]
        content = response.content.decode()
        for section in ("breakers", "consumer-lag"):
            start = content.index(f'id="{section}"')
            assert "unavailable" in content[start : content.index("</section>", start)]
        return content

    def given_database_figures(self) -> None:
        outbox_row(OutboxStatus.FAILED)
        order_aged(OrderStatus.PENDING, age=timedelta(hours=1))

    def test_redis_and_kafka_refusing_connections(self, admin_client, settings, redis_unreachable):
        kafka_host, kafka_port = settings.KAFKA_BOOTSTRAP_SERVERS[0].split(":")
        kafka = TcpProxy(kafka_host, int(kafka_port)).start()
        settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{kafka.port}"]
        kafka.cut()
        self.given_database_figures()

        self.assert_page_renders_without_the_dead_sources(admin_client, within=2.0)

    @pytest.mark.kafka
    def test_redis_and_kafka_accepting_connections_but_never_answering(self, admin_client, broker, redis_hung):
        self.given_database_figures()
        broker.pause()
        try:
            self.assert_page_renders_without_the_dead_sources(admin_client, within=3.5)
        finally:
            broker.resume()

    @pytest.mark.kafka  # consumer lag is read from the broker
    def test_the_whole_snapshot_reads_every_figure_when_all_is_up(self):
        snapshot = overview_snapshot()

        unavailable = {
            name: getattr(snapshot, name).reason
            for name in ("outbox_backlog", "outbox_failed", "breakers", "dead_letters", "consumer_lag",
                         "stuck_orders", "periodic_jobs", "activity")
            if isinstance(getattr(snapshot, name), Unavailable)
        }  # fmt: skip
        assert unavailable == {}
