import sys
import uuid

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from checkout.cart_cache import cart_cache_reset_for_tests
from payments.client import payment_client_reset
from tests.api import login
from tests.factories import ProductFactory, UserFactory
from tests.payment_provider import PaymentProvider
from tests.support import ConsumerProcess, DisposableBroker, shared_state_reset

# Fixtures that start or talk to a broker: a test using one is a `kafka` test
# whether or not it says so, so `-m "not kafka"` never selects it.
BROKER_FIXTURES = {"broker", "consumers", "soak_platform"}
# Fixtures that start order consumers (alone or in a whole platform): a test
# using one is a `many_connections` test (tests/services.py says why it matters).
CONSUMER_FIXTURES = {"consumers", "supervisor", "drill_platform", "soak_platform"}
CONSUMER_LOG_LINES_ON_FAILURE = 80


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if BROKER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.kafka)
        if CONSUMER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.many_connections)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """Keep each phase's report on the test, so a fixture's teardown can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def _clean_cache():
    cart_cache_reset_for_tests()
    cache.clear()
    yield
    cart_cache_reset_for_tests()


@pytest.fixture(autouse=True)
def _clean_shared_state():
    """Breaker state lives in Redis and the producer in the process: every test starts fresh."""
    shared_state_reset()
    yield
    shared_state_reset()


@pytest.fixture
def broker(settings):
    """A broker of the test's own, which the test may pause or kill, and whose topics hold only its events."""
    disposable = DisposableBroker()
    disposable.start()
    settings.KAFKA_BOOTSTRAP_SERVERS = [disposable.bootstrap]
    shared_state_reset()
    yield disposable
    disposable.kill()
    shared_state_reset()


@pytest.fixture
def consumers(broker, payment_provider, tmp_path, request):
    """Start `manage.py consume_orders` processes on the test's broker and payment provider; each is stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(**env: str) -> ConsumerProcess:
        consumer = ConsumerProcess(bootstrap=broker.bootstrap, log_path=tmp_path / f"consumer-{len(started)}.log", env=env)
        started.append(consumer.start())
        return consumer

    yield start
    for consumer in started:
        consumer.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        # The consumers' side of a failure (a CI log shows nothing else of them).
        for consumer in started:
            lines = consumer.log().splitlines()[-CONSUMER_LOG_LINES_ON_FAILURE:]
            sys.stderr.write(f"--- last {len(lines)} lines of {consumer.log_path.name} ---\n" + "\n".join(lines) + "\n")


@pytest.fixture(scope="session")
def payment_provider_process(tmp_path_factory):
    """The fake payment provider's process for this worker (tests.payment_provider), stopped at the end."""
    provider = PaymentProvider(store=tmp_path_factory.mktemp("payment-provider") / "ledger.sqlite3")
    provider.start()
    yield provider
    provider.close()


@pytest.fixture
def payment_provider(payment_provider_process, settings):
    """The payment provider every payment test talks to: settings point at it, no faults before or after."""
    provider = payment_provider_process
    if not provider.running():  # a test before this one killed it: the same port and ledger again
        provider.start()
    provider.resume()
    provider.faults_reset()
    settings.PAYMENT_PROVIDER_URL = provider.url
    payment_client_reset()
    yield provider
    if not provider.running():
        provider.start()
    provider.resume()
    provider.faults_reset()
    payment_client_reset()


@pytest.fixture
def payment_provider_of_its_own(tmp_path, settings):
    """A provider process with an empty ledger for this test alone (for tests that read every charge)."""
    provider = PaymentProvider(store=tmp_path / "payment-provider.sqlite3").start()
    settings.PAYMENT_PROVIDER_URL = provider.url
    payment_client_reset()
    yield provider
    provider.close()
    payment_client_reset()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def manager_client(db) -> APIClient:
    user = UserFactory(manager=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(client, user.username, 'password123')}")
    return client


@pytest.fixture
def customer_client(db) -> APIClient:
    """Authenticated, but not a manager."""
    user = UserFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {login(client, user.username, 'password123')}")
    return client


@pytest.fixture
def product(db):
    return ProductFactory(inventory_quantity=10)


@pytest.fixture
def session_id() -> str:
    return f"session-{uuid.uuid4().hex}"
