"""Short versions of three fault drills (scripts/drill.sh), against a platform this test starts.

The platform is the run command's own supervisord with the repository's
program definitions (the fake payment provider, web, worker, beat, consumer,
the event listener and Prometheus, its rules evaluated every second) on free ports, the test
database, the test Redis and the suite's broker (tests/ops/platform.py). The drill runs as
`scripts/drill.sh` runs it (`ops.drills.runner.drill_run`): a real checkout
load, the real fault, quiescence, the report from the database, the broker
and Prometheus.
"""
import argparse
import io
import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.core.management import call_command

from bench.e2e import Platform, payment_faults
from ops.drills import faults
from ops.drills.broker_proxy import proxy_faults_reset, proxy_faults_write
from ops.drills.report import Prometheus
from ops.drills.runner import drill_run
from ops.drills.scenarios import SCENARIOS, Context
from orders.models import Order
from tests.factories import ProductFactory, UserFactory
from tests.ops.platform import DrillPlatform
from tests.servers import free_port
from tests.support import ROOT, accepting, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

# Reconciliation settles payments left in doubt within the drill's wait, not after the production 2 minutes.
RECONCILE_SECONDS = 5


@pytest.fixture
def drill_platform(tmp_path, broker, monkeypatch, settings):
    if shutil.which("prometheus") is None:
        pytest.fail("Prometheus is needed (Debian package: prometheus; scripts/test.sh installs it)")
    ProductFactory.create_batch(4, inventory_quantity=500)
    platform_manager = UserFactory(manager=True)
    settings.ORDER_RECONCILE_INTERVAL_SECONDS = RECONCILE_SECONDS
    settings.ORDER_RECONCILE_AFTER_SECONDS = RECONCILE_SECONDS  # the drill's wait for reconciliation, too
    call_command("setup_schedules", stdout=io.StringIO())
    platform = DrillPlatform(tmp_path, env={"ORDER_RECONCILE_AFTER_SECONDS": str(RECONCILE_SECONDS)})
    # `manage.py payment_faults`, run by the drill, must reach the platform's provider with the test settings.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "ecommerce.settings.test")
    monkeypatch.setenv("TEST_PAYMENT_PROVIDER_URL", platform.payment_provider_url)
    # The drill's report reads the provider's ledger from this process.
    settings.PAYMENT_PROVIDER_URL = platform.payment_provider_url
    platform.manager = platform_manager.username
    platform.start()
    try:
        yield platform
    finally:
        payment_faults("--reset")
        platform.stop()


def run(
    platform: DrillPlatform, scenario: str, *, fault_seconds: float | None = None, duration: float | None = None,
    settle_timeout: float = 60.0,
):
    site = faults.Site(
        root=ROOT, run_dir=platform.run_dir, kafka_port=0, bootstrap_servers=list(settings.KAFKA_BOOTSTRAP_SERVERS),
        redis_url=settings.REDIS_URL, database_url="",
    )  # fmt: skip
    options = argparse.Namespace(
        base_url=platform.base_url, rate=2.0, duration=duration, fault_at=3.0, fault_seconds=fault_seconds,
        settle_timeout=settle_timeout, alert_timeout=40.0, request_timeout=10.0,
    )  # fmt: skip
    manager = Platform(platform.base_url, username=platform.manager, password="password123", metrics_token=None, timeout_seconds=10)
    context = Context(site=site, supervisor=faults.Supervisor(platform.run_dir / "supervisor.sock"))
    return drill_run(
        SCENARIOS[scenario], context=context, platform=manager, prometheus=Prometheus(f"http://127.0.0.1:{platform.prometheus_port}"), options=options
    )  # fmt: skip


def test_consumer_kill_drill_keeps_every_order_and_fires_process_restarting(drill_platform):
    supervisor = faults.Supervisor(drill_platform.run_dir / "supervisor.sock")
    consumer = supervisor.pid("consumer")

    report = run(drill_platform, "consumer-kill")

    print(report.render())
    assert report.passed, report.violations
    assert supervisor.pid("consumer") != consumer  # really killed, and restarted
    assert report.placed >= 20 and report.placed == report.statuses["PAID"]
    assert not (report.lost or report.stuck or report.paid_twice or report.stock_mismatches)
    assert any(alert.name == "ProcessRestarting" and alert.labels.get("process") == "consumer" for alert in report.alerts)
    assert report.first_paid_after_undo is not None


def test_payment_slow_drill_pays_every_order_once_and_recovers(drill_platform):
    started = time.time()

    # Long enough for one order's three attempts (5 s limit each, 1 s and 2 s apart) to all time out.
    # The load goes on 20 s after it and after the breaker's 30 s open time (the
    # runner's default), so new orders show the recovery.
    # Settling waits for reconciliation, whose lookups wait for the breaker to close again.
    report = run(drill_platform, "payment-slow", fault_seconds=20.0, settle_timeout=120.0)

    print(report.render())
    assert report.passed, report.violations
    # The provider was too slow to answer in time, yet charged: no order is FAILED for it. The orders left
    # in doubt were settled by reconciliation from the provider's own word, PAID once each.
    assert report.placed == report.statuses["PAID"] and set(report.statuses) == {"PAID"}
    assert Order.objects.filter(reconcile_attempts__gt=0, status="PAID").exists()  # the fault really bit
    assert report.first_paid_after_undo is not None  # and healed afterwards
    assert json.loads(payment_faults("--show").stdout)["faults"]["latency_seconds"] == 0.0  # the switch was reset
    assert time.time() - started < 240


def test_payment_ambiguous_drill_pays_each_charged_order_once_and_the_ledger_matches(drill_platform):
    started = time.time()

    # A third of the charges answered after the client's 5 s limit, a third reset after charging: each charge was
    # taken, none may become a decline. The load goes on past the breaker's open time; settling waits for
    # reconciliation to find the charges of the orders left in doubt.
    report = run(drill_platform, "payment-ambiguous", fault_seconds=20.0, settle_timeout=120.0)

    print(report.render())
    assert report.passed, report.violations
    assert report.ledger_summary.endswith("; 0 mismatches") and report.ledger_mismatches == []
    assert not (report.lost or report.stuck or report.paid_twice or report.stock_mismatches)
    # Every charge request reached a provider that charged: an order FAILED only on its word that none exists.
    assert report.placed == sum(report.statuses.values()) and set(report.statuses) <= {"PAID", "FAILED"}
    assert report.statuses["PAID"] > 0
    assert any(note.startswith("payments in doubt: ") for note in report.notes)  # the check saw the fault bite
    assert json.loads(payment_faults("--show").stdout)["faults"]["late_answer_rate"] == 0.0  # the switch was reset
    assert time.time() - started < 240


def test_broker_proxy_adds_the_delay_it_is_told_and_heals_when_the_file_goes(tmp_path):
    """The broker-latency drill's proxy, in front of a real TCP echo server."""
    echo = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: _echo(echo), daemon=True).start()
    listen_port, control = free_port(), tmp_path / "faults.json"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ops.drills.broker_proxy", "--listen", f"127.0.0.1:{listen_port}",
         "--target", f"127.0.0.1:{echo.getsockname()[1]}", "--control", str(control)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: accepting(listen_port), timeout=15, what="the proxy listening")

        def round_trip() -> float:
            with socket.create_connection(("127.0.0.1", listen_port), timeout=10) as client:
                started = time.monotonic()
                client.sendall(b"ping")
                assert client.recv(16) == b"ping"
                return time.monotonic() - started

        assert round_trip() < 0.15
        proxy_faults_write(control, delay_seconds=0.3, loss=0.0)
        time.sleep(0.6)  # re-read at most twice a second
        assert 0.6 <= round_trip() < 1.5  # 0.3 s each way
        proxy_faults_reset(control)
        time.sleep(0.6)
        assert round_trip() < 0.15
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)
        echo.close()


def _echo(server) -> None:
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            while data := connection.recv(4096):
                connection.sendall(data)
