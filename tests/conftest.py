import uuid

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from checkout.cart_cache import cart_cache_reset_for_tests
from tests.api import login
from tests.factories import ProductFactory, UserFactory
from tests.support import ConsumerProcess, DisposableBroker, shared_state_reset


# Fixtures that start or talk to a broker: a test using one is a `kafka` test
# whether or not it says so, so `-m "not kafka"` never selects it.
BROKER_FIXTURES = {"broker", "consumers"}
# Fixtures that start order consumers (alone or in a whole platform): a test
# using one is a `many_connections` test, as are those with big thread pools.
CONSUMER_FIXTURES = {"consumers", "supervisor", "drill_platform"}
# A consumer holds up to two PostgreSQL connections per message in flight (16
# by default), a test's pool one per thread (up to 50), and the server's 100
# are shared with every other run on the machine: four such tests at once, one
# per worker, ran out of them. A parallel run therefore keeps them in two lanes
# (xdist groups, each run by one worker in turn), while the other workers take
# the rest of the suite.
MANY_CONNECTIONS_LANES = 2


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    laned = 0
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if BROKER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.kafka)
        if CONSUMER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.many_connections)
        if item.get_closest_marker("many_connections") is not None:
            # Test by test in turn, not file by file: the lanes come out about as long as each other.
            item.add_marker(pytest.mark.xdist_group(f"many-connections-{laned % MANY_CONNECTIONS_LANES}"))
            laned += 1


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
def consumers(broker, tmp_path):
    """Start `manage.py consume_orders` processes on the test's broker; each is stopped afterwards."""
    started: list[ConsumerProcess] = []

    def start(**env: str) -> ConsumerProcess:
        consumer = ConsumerProcess(bootstrap=broker.bootstrap, log_path=tmp_path / f"consumer-{len(started)}.log", env=env)
        started.append(consumer.start())
        return consumer

    yield start
    for consumer in started:
        consumer.stop()


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
