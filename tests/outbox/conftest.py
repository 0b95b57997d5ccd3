import pytest
import redis
from django.conf import settings

from ecommerce.kafka.client import event_producer_reset
from outbox.trigger import outbox_trigger_reset
from resilience.policies import breakers_reset
from tests.support import DisposableBroker


def _reset_shared_state() -> None:
    """Fresh producer, breakers and trigger; the shared breaker state in Redis wiped."""
    event_producer_reset()
    breakers_reset()
    outbox_trigger_reset()
    client = redis.Redis.from_url(settings.RESILIENCE_REDIS_URL)
    for key in client.scan_iter("circuit-breaker:*"):
        client.delete(key)
    client.close()


@pytest.fixture(autouse=True)
def relay_state():
    _reset_shared_state()
    yield
    _reset_shared_state()


@pytest.fixture
def broker(settings):
    """A broker of the test's own, which the test may pause or kill."""
    disposable = DisposableBroker()
    disposable.start()
    settings.KAFKA_BOOTSTRAP_SERVERS = [disposable.bootstrap]
    event_producer_reset()
    yield disposable
    disposable.kill()
    event_producer_reset()


@pytest.fixture
def fast_policies(settings):
    """The SPEC numbers, with waits short enough for a test."""
    settings.RESILIENCE_POLICIES = {
        "kafkaPublisher": {
            "timeout_seconds": 1.0,
            "breaker": {"open_seconds": 2.0},
            "retry": {"initial_seconds": 0.05, "multiplier": 2.0, "jitter_seconds": 0.01, "max_seconds": 0.5},
        }
    }
    breakers_reset()
