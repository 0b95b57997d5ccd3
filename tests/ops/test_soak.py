"""The suite's short soak: two minutes of checkouts under eight overlapping faults, and a clean certificate.

Against a platform this test starts (tests/ops/platform.py): the run
command's supervisord with the payment provider, web, worker, beat and
consumer on the test database and Redis, the broker behind the fault proxy. The soak runs as
`scripts/drill.sh soak` runs it (`ops.soak.runner.soak_run`), with the fixed
options of `SHORT_SOAK`: real faults (SIGKILL, SIGSTOP, FLUSHDB, a client cut
at the proxy, a relay frozen holding row locks, a transaction held open),
every one undone, and the checker judging the real history and read-backs.
The same checker's failures: test_soak_checker.py and test_soak_planted.py.
"""
import io
import json
from dataclasses import replace

import pytest
from django.core.management import call_command

from bench.e2e import payment_faults
from ops.soak.nemesis import schedule_overlapping
from ops.soak.runner import soak_run, soak_schedule
from payments.client import payment_client_reset
from tests.factories import ProductFactory, UserFactory
from tests.ops.platform import SHORT_SOAK, SOAK_PROGRAMS, DrillPlatform, ProxiedBroker
from tests.support import database_url_for_tests, shared_state_reset

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(480)]


@pytest.fixture
def soak_platform(tmp_path, settings, monkeypatch):
    run_dir = tmp_path / "run"
    broker = ProxiedBroker(run_dir)
    broker.start()
    platform = None
    try:
        settings.KAFKA_BOOTSTRAP_SERVERS = [broker.bootstrap]
        shared_state_reset()
        ProductFactory.create_batch(4, inventory_quantity=500)
        manager = UserFactory(manager=True)
        # Reconciliation at the soak's pace: an order stuck 20 s (a consumer cut) is re-driven within 5 s more.
        settings.ORDER_RECONCILE_INTERVAL_SECONDS = 5
        call_command("setup_schedules", stdout=io.StringIO())
        platform = DrillPlatform(
            run_dir, programs=SOAK_PROGRAMS,
            env={"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "ORDER_RECONCILE_AFTER_SECONDS": "20", "WEB_CONCURRENCY": "2",
                 "WEB_THREADS": "6", "CONSUMER_MAX_IN_FLIGHT": "4"},
        )  # fmt: skip
        # `manage.py payment_faults`, run by the payment faults, must reach the platform's provider with the test
        # settings; the read-back asks it for its ledger from this process.
        monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "ecommerce.settings.test")
        monkeypatch.setenv("TEST_PAYMENT_PROVIDER_URL", platform.payment_provider_url)
        settings.PAYMENT_PROVIDER_URL = platform.payment_provider_url
        payment_client_reset()
        platform.manager = manager.username
        platform.start()
        yield platform, broker
    finally:
        if platform is not None:
            payment_faults("--reset")
            platform.stop()
        broker.kill()
        shared_state_reset()
        payment_client_reset()


def test_a_short_soak_of_overlapping_faults_gets_a_clean_certificate(soak_platform, settings, tmp_path):
    platform, broker = soak_platform
    options = replace(SHORT_SOAK, base_url=platform.base_url, out=tmp_path / "soak", manager=(platform.manager, "password123"))
    site = replace(broker.site, redis_url=settings.REDIS_URL, database_url=database_url_for_tests())
    schedule, excluded = soak_schedule(options, site)
    assert not excluded  # every kind of the short soak can run on this platform
    assert schedule_overlapping(schedule) >= 4

    certificate = soak_run(options, site=site, supervisor_socket=platform.supervisor_socket, schedule=schedule, excluded=excluded)

    print(certificate.render())
    assert certificate.clean
    assert certificate.faults["injected"] == len(schedule) and not certificate.faults["errors"]
    assert certificate.faults["overlapping"] >= 4
    figures = certificate.figures
    assert figures["acknowledged"] >= 0.8 * options.rate * options.load_seconds
    assert figures["lost"] == figures["duplicated"] == figures["stranded"] == figures["ledger_mismatches"] == 0
    assert figures["stock_conserved"]
    written = json.loads((options.out / "certificate.json").read_text())
    assert written["clean"] is True and written["run"]["seed"] == SHORT_SOAK.seed
    assert (options.out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
