"""Login is throttled per username and per client address; checkout per client address.

The throttles count in Redis through Django's cache (the suite's own database,
flushed between tests). Their clock is DRF's injectable `timer`.
"""
import socket

import pytest
import redis
from django.conf import settings

from core.throttles import CheckoutClientThrottle, LoginClientThrottle, LoginUsernameThrottle
from orders.models import Order
from tests.api import API, add_to_cart, assert_problem, checkout
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = f"{API}/auth/login"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    for throttle in (LoginClientThrottle, LoginUsernameThrottle, CheckoutClientThrottle):
        monkeypatch.setattr(throttle, "timer", fake)
    return fake


@pytest.fixture
def rates(settings):
    """Set the throttle rates for one test (DRF reloads its settings on change)."""

    def set_rates(**rates: str) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], **rates},
        }

    return set_rates


def login(client, username: str, password: str, address: str = "198.51.100.7", **headers):
    return client.post(
        LOGIN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address, **headers
    )


class TestLoginBruteForce:
    def test_thirty_wrong_passwords_are_throttled_before_the_thirtieth_and_the_right_one_works_after_the_window(
        self, api_client, clock
    ):
        # given a manager, and the default rates
        user = UserFactory(manager=True)

        # when an attacker tries 30 wrong passwords in a row
        statuses = [login(api_client, user.username, f"guess-{n}").status_code for n in range(30)]

        # then they are refused with 429 before the 30th
        first_throttled = statuses.index(429)
        assert first_throttled < 29
        assert set(statuses[:first_throttled]) == {401}
        assert set(statuses[first_throttled:]) == {429}

        # and the right password is refused too while the window lasts
        throttled = login(api_client, user.username, "password123")
        problem = assert_problem(throttled, 429)
        assert problem["title"] == "Too Many Requests"
        retry_after = int(throttled["Retry-After"])
        assert 1 <= retry_after <= 60

        # when the window has passed
        clock.now += retry_after + 60

        # then the right password works
        response = login(api_client, user.username, "password123")
        assert response.status_code == 200, response.content
        assert response.json()["tokenType"] == "Bearer"

    def test_one_username_is_throttled_from_any_number_of_addresses(self, api_client, clock, rates):
        # given
        rates(**{"login-username": "3/min", "login-client": "100/min"})
        user = UserFactory()

        # when guesses come from a new address each time
        statuses = [login(api_client, user.username, "wrong", address=f"203.0.113.{n}").status_code for n in range(5)]

        # then
        assert statuses == [401, 401, 401, 429, 429]

    def test_the_username_bucket_ignores_case(self, api_client, clock, rates):
        # given
        rates(**{"login-username": "2/min", "login-client": "100/min"})

        # when
        statuses = [login(api_client, name, "wrong").status_code for name in ("Alice", "alice", "ALICE")]

        # then
        assert statuses == [401, 401, 429]

    def test_one_address_is_throttled_across_usernames(self, api_client, clock, rates):
        # given
        rates(**{"login-username": "100/min", "login-client": "3/min"})

        # when one address tries a new username each time
        statuses = [login(api_client, f"user-{n}", "wrong").status_code for n in range(5)]

        # then
        assert statuses == [401, 401, 401, 429, 429]

    def test_a_forged_x_forwarded_for_does_not_buy_a_fresh_bucket(self, api_client, clock, rates):
        # given no trusted proxy (the default): the address is REMOTE_ADDR
        rates(**{"login-username": "100/min", "login-client": "2/min"})

        # when each attempt claims another origin
        statuses = [
            login(api_client, f"user-{n}", "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code for n in range(3)
        ]

        # then
        assert statuses == [401, 401, 429]

    def test_behind_one_trusted_proxy_the_forwarded_client_address_is_used(self, api_client, clock, rates, settings):
        # given nginx in front (API_TRUSTED_PROXY_COUNT=1): REMOTE_ADDR is the proxy's
        rates(**{"login-username": "100/min", "login-client": "2/min"})
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

        # when two clients come through the same proxy
        first = [login(api_client, "a", "wrong", address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.1").status_code for _ in range(3)]
        second = login(api_client, "b", "wrong", address="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.2")

        # then each has its own bucket
        assert first == [401, 401, 429]
        assert second.status_code == 401

    def test_the_counts_live_in_the_shared_cache(self, api_client, clock, rates):
        # given
        rates(**{"login-username": "2/min", "login-client": "100/min"})
        login(api_client, "bob", "wrong")
        login(api_client, "bob", "wrong")

        # when Redis itself is asked
        keys = redis.Redis.from_url(settings.REDIS_URL).keys("*throttle_login-username_*")

        # then the bucket is there, for every web worker to read
        assert len(keys) == 1
        assert login(api_client, "bob", "wrong").status_code == 429


class TestCheckoutRateLimit:
    def test_checkouts_past_the_rate_are_429_and_create_no_order(self, api_client, clock, rates, product, session_id):
        # given
        rates(**{"checkout-client": "2/min"})

        # when one client checks out three times
        responses = []
        for n in range(3):
            add_to_cart(api_client, f"{session_id}-{n}", product.id)
            responses.append(checkout(api_client, f"{session_id}-{n}", key=f"key-{n}"))

        # then
        assert [response.status_code for response in responses] == [201, 201, 429]
        assert_problem(responses[2], 429)
        assert int(responses[2]["Retry-After"]) >= 1
        assert Order.objects.count() == 2

    def test_the_default_checkout_rate_is_generous(self, api_client, clock, product, session_id):
        # given the default per-client rate
        add_to_cart(api_client, session_id, product.id)

        # when a client retries one checkout 50 times (the same Idempotency-Key replays)
        statuses = {checkout(api_client, session_id, key="one-key").status_code for _ in range(50)}

        # then it is never throttled
        assert statuses == {201}
        assert Order.objects.count() == 1


class TestRedisDown:
    def test_login_is_let_through_when_the_throttle_store_is_unreachable(self, api_client, settings):
        # given a cache that points at a port nothing listens on
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{closed}/0"}}
        user = UserFactory(manager=True)

        # when
        response = login(api_client, user.username, "password123")

        # then Redis is an accelerator, never a reason to refuse a customer
        assert response.status_code == 200, response.content
