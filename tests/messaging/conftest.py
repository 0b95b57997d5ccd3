import pytest

from orders.payments import mock_gateway_connections_close


@pytest.fixture(scope="session", autouse=True)
def _gateway_connections_closed(django_db_setup, django_db_blocker):
    """Close the mock provider's kept connections (the refund test charges) before the test database is dropped."""
    yield
    with django_db_blocker.unblock():
        mock_gateway_connections_close()
