import pytest

from resilience.policies import breakers_reset

# Short enough for fast tests, long enough for a loaded machine's local round trip.
TIME_LIMIT_SECONDS = 0.5
FAST_POLICY = {"timeout_seconds": TIME_LIMIT_SECONDS, "retry": {"initial_seconds": 0.01, "max_seconds": 0.02}}


@pytest.fixture
def fast_policy(settings):
    """The paymentService policy with a short time limit and quick retries (breaker as configured)."""
    settings.RESILIENCE_POLICIES = {"paymentService": FAST_POLICY}
    breakers_reset()
    yield
    breakers_reset()
