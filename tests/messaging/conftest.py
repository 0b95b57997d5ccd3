import pytest


@pytest.fixture(autouse=True)
def _payments_over_http(payment_provider):
    """The contract tests pay orders through the fake provider's process, like the platform."""
    return payment_provider
