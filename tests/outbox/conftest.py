import pytest

from resilience.policies import breakers_reset


@pytest.fixture
def fast_policies(settings):
    """The numbers of docs/contract.md "Resilience policies", with waits short enough for a test."""
    settings.RESILIENCE_POLICIES = {
        "kafkaPublisher": {
            "timeout_seconds": 1.0,
            "breaker": {"open_seconds": 2.0},
            "retry": {"initial_seconds": 0.05, "multiplier": 2.0, "max_seconds": 0.5},
        }
    }
    breakers_reset()
