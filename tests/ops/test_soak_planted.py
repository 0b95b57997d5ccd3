"""The checker can fail: each defect planted in a real run (core/planted.py) is reported, and the same run without it is clean.

Each run drives a platform's pieces directly, as a soak would see them:
customers over HTTP against the test's live server (the soak's own workload,
writing its history), the relay in this process, real `consume_orders`
processes on the test's broker, a consumer SIGKILLed for real; then the
soak's read-back and checker. No beat runs, so reconciliation does not
repair what the defect did (on a full platform it re-drives a stranded order
after ORDER_RECONCILE_AFTER_SECONDS; the certificate counts those orders).
"""
import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from catalog.models import Product
from core.planted import COMMIT_OFFSET_BEFORE_DATABASE, DROP_OUTBOX_ROW, SKIP_PROCESSED_EVENT_CHECK
from deadletters.models import DeadLetter
from ops.drills.report import unsettled_counts
from ops.soak.certificate import Certificate, certificate_build
from ops.soak.history import FaultRecord, History, RunEnd, RunRecord, history_load
from ops.soak.readback import readback_take
from ops.soak.workload import CUSTOMER_DOMAIN, ManagerSession, Workload, WorkloadMix
from orders.models import Order, OrderStatus
from outbox.relay import outbox_drain
from tests.factories import ProductFactory
from tests.support import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

CUSTOMERS = 6
# The most a run waits for its orders to settle and its rows to be relayed; it
# returns as soon as they are. A restarted consumer rejoins its group and pays
# in seconds on a quiet machine; 20 s fell just short on a loaded one.
SETTLE_SECONDS = 60
# A planted run never settles whole (that is the defect): it waits this long, then is judged.
PLANTED_SETTLE_SECONDS = 20
# Plain customers: one checkout each, no retry, replay or cancel.
PLAIN = WorkloadMix(retry_share=0.0, replay_share=0.0, cancel_share=0.0)


class PlantedRun:
    """A small real run and its history, judged by the soak's checker."""

    def __init__(self, directory: Path, base_url: str, bootstrap: str) -> None:
        self.directory, self.base_url, self.bootstrap = directory, base_url, bootstrap
        self.products = [str(product.id) for product in ProductFactory.create_batch(2, inventory_quantity=100)]
        self.history = History(directory / "history.jsonl")
        self.started_at = time.time()
        stock = {str(key): value for key, value in Product.objects.values_list("id", "inventory_quantity")}
        run = RunRecord(
            seed=1, rate=CUSTOMERS, minutes=1 / 60, started_at=self.started_at, load_seconds=1, quiet_seconds=0, settle_within_seconds=30,
            key_prefix="planted", customer_domain=CUSTOMER_DOMAIN, fault_kinds=[], excluded_kinds={}, schedule=[], stock_before=stock,
        )  # fmt: skip
        self.history.record(run)

    def customers(self) -> None:
        products = [{"id": product_id} for product_id in self.products]
        Workload(
            base_url=self.base_url, products=products, rate=CUSTOMERS, duration_seconds=1, seed=1, key_prefix="planted",
            history=self.history, manager=ManagerSession(self.base_url, username="-", password="-", timeout_seconds=5), mix=PLAIN,
        ).run(threading.Event())  # fmt: skip
        assert Order.objects.count() == CUSTOMERS

    def consumer_killed(self, consumer, *, by_itself: bool = False) -> None:
        """SIGKILL a consumer (or wait for its crash hook to), as a fault of the run."""
        started = time.time()
        if not by_itself:
            os.killpg(consumer.process.pid, signal.SIGKILL)
        assert consumer.wait(timeout=60) == -signal.SIGKILL
        self.history.record(FaultRecord("consumer-kill", started - self.started_at, 0, started, time.time()))

    def settle(self, *, seconds: float) -> None:
        """Relay what the consumers wrote until nothing is left unsettled (or `seconds` pass)."""
        deadline = time.monotonic() + seconds
        since = datetime.fromtimestamp(self.started_at, tz=UTC)
        while time.monotonic() < deadline:
            outbox_drain(batch_size=100, time_budget_seconds=5)
            if unsettled_counts(since=since) == (0, 0):
                return
            time.sleep(0.5)

    def certificate(self) -> Certificate:
        self.history.record(RunEnd(load_ended_at=time.time(), last_healed_at=None, settled_at=None))
        self.history.close()
        readback = readback_take(since=self.started_at, product_ids=self.products, bootstrap_servers=[self.bootstrap])
        certificate = certificate_build(history_load(self.directory / "history.jsonl"), readback)
        print(certificate.render())
        return certificate


def _failed(certificate: Certificate) -> set[str]:
    return {finding.name for finding in certificate.checks if not finding.passed}


@pytest.fixture
def planted_run(tmp_path, live_server, broker):
    return PlantedRun(tmp_path, live_server.url, broker.bootstrap)


def _plant(name: str, planted: bool) -> dict[str, str]:
    return {"PLANTED_DEFECTS": name if planted else ""}


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "control"])
def test_skipping_the_processed_events_check_is_reported(planted, planted_run, consumers):
    planted_run.customers()
    outbox_drain(batch_size=100, time_budget_seconds=10)
    # Dies between its first message's database commit and its offset commit: that message comes again.
    crashing = consumers(CONSUMER_CRASH_AFTER_DB_COMMIT="true", **_plant(SKIP_PROCESSED_EVENT_CHECK, planted))
    planted_run.consumer_killed(crashing, by_itself=True)
    consumers(**_plant(SKIP_PROCESSED_EVENT_CHECK, planted))
    planted_run.settle(seconds=PLANTED_SETTLE_SECONDS if planted else SETTLE_SECONDS)
    if planted:
        wait_for(DeadLetter.objects.exists, timeout=30, what="the redelivery to be dead-lettered")

    certificate = planted_run.certificate()

    if planted:
        assert not certificate.clean
        assert "dead-letters" in _failed(certificate)  # the redelivery, not recognised, failed on the processed-event key
    else:
        assert certificate.clean


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "control"])
def test_committing_the_offset_before_the_database_is_reported(planted, planted_run, consumers, payment_provider):
    planted_run.customers()
    outbox_drain(batch_size=100, time_budget_seconds=10)
    payment_provider.faults(latency_seconds=3)
    slow = consumers(**_plant(COMMIT_OFFSET_BEFORE_DATABASE, planted))
    wait_for(lambda: Order.objects.filter(status=OrderStatus.PROCESSING).count() == CUSTOMERS, timeout=60, what="every order in payment")
    time.sleep(1)  # past the consumer's commit interval
    planted_run.consumer_killed(slow)  # mid-payment, every order PROCESSING
    payment_provider.faults_reset()
    consumers(**_plant(COMMIT_OFFSET_BEFORE_DATABASE, planted))
    planted_run.settle(seconds=PLANTED_SETTLE_SECONDS if planted else SETTLE_SECONDS)

    certificate = planted_run.certificate()

    if planted:
        assert not certificate.clean
        assert "settled" in _failed(certificate)  # committed, never processed: stranded in PROCESSING
        assert Order.objects.filter(status=OrderStatus.PROCESSING).exists()
    else:
        assert certificate.clean


@pytest.mark.parametrize("planted", [True, False], ids=["planted", "control"])
def test_dropping_an_outbox_row_is_reported(planted, planted_run, consumers, settings):
    planted_run.customers()
    settings.PLANTED_DEFECTS = frozenset({DROP_OUTBOX_ROW}) if planted else frozenset()
    outbox_drain(batch_size=100, time_budget_seconds=10)  # one batch: its first row is dropped
    settings.PLANTED_DEFECTS = frozenset()
    consumers()
    planted_run.settle(seconds=PLANTED_SETTLE_SECONDS if planted else SETTLE_SECONDS)

    certificate = planted_run.certificate()

    if planted:
        assert not certificate.clean
        assert {"settled", "delivery"} <= _failed(certificate)  # an order never paid; a row PUBLISHED that Kafka never got
    else:
        assert certificate.clean
