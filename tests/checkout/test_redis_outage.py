"""Carts and checkout keep working while Redis is down (a real Redis, really killed)."""
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from prometheus_client import REGISTRY

from checkout.cart_cache import cart_cache_reset_for_tests
from orders.models import Order
from tests.api import API, add_to_cart, checkout
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DisposableRedis:
    """A redis-server of the test's own, so it can be killed without harming anyone."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not on PATH; install it (apt-get install redis-server) to run outage tests")
        self.binary = binary
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"disposable redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def disposable_redis(settings) -> Iterator[DisposableRedis]:
    redis = DisposableRedis()
    redis.start()
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": redis.url,
        }
    }
    yield redis
    redis.kill()


def _cache_errors() -> float:
    return sum(
        REGISTRY.get_sample_value("cart_cache_errors_total", {"operation": operation}) or 0.0
        for operation in ("get", "set", "delete")
    )


def test_carts_and_checkout_survive_a_redis_crash(api_client, disposable_redis):
    session_id = f"s-{uuid.uuid4().hex}"
    book, mug = ProductFactory(inventory_quantity=10), ProductFactory(inventory_quantity=10)
    assert add_to_cart(api_client, session_id, book.id, 1).status_code == 200
    assert api_client.get(f"{API}/carts/{session_id}").status_code == 200
    assert cache.get(f"cart:{session_id}") is not None  # the cart really was in Redis
    errors_before = _cache_errors()

    disposable_redis.kill()

    added = add_to_cart(api_client, session_id, mug.id, 2)
    assert added.status_code == 200
    assert {item["productId"]: item["quantity"] for item in added.json()["items"]} == {
        str(book.id): 1,
        str(mug.id): 2,
    }
    assert api_client.get(f"{API}/carts/{session_id}").status_code == 200
    response = checkout(api_client, session_id, str(uuid.uuid4()))
    assert response.status_code == 201
    assert Order.objects.filter(order_number=response.json()["orderNumber"]).exists()
    assert _cache_errors() > errors_before  # the outage was counted

    disposable_redis.start()  # Redis is back (empty, as after any restart)
    cart_cache_reset_for_tests()  # skip the post-failure back-off instead of waiting it out
    assert api_client.get(f"{API}/carts/{session_id}").json()["items"] == []
    assert cache.get(f"cart:{session_id}") is not None  # caching resumed


def test_a_redis_that_never_answers_costs_no_request(api_client, settings, db):
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{_free_port()}/0"}}
    session_id = f"s-{uuid.uuid4().hex}"
    product = ProductFactory(inventory_quantity=5)
    assert add_to_cart(api_client, session_id, product.id, 1).status_code == 200
    assert api_client.get(f"{API}/carts/{session_id}").status_code == 200
    assert checkout(api_client, session_id, str(uuid.uuid4())).status_code == 201


@pytest.mark.kafka  # readiness asks the broker too: only Redis may be down
def test_a_redis_crash_leaves_the_web_tier_ready_degraded_while_checkout_answers_201(
    api_client, settings, disposable_redis
):
    settings.REDIS_URL = disposable_redis.url  # what readiness pings
    session_id = f"s-{uuid.uuid4().hex}"
    assert add_to_cart(api_client, session_id, ProductFactory(inventory_quantity=5).id, 1).status_code == 200

    disposable_redis.kill()

    ready = api_client.get("/health/ready")
    assert ready.status_code == 200, ready.content
    assert (ready.json()["status"], ready.json()["degraded"]) == ("DEGRADED", ["redis"])
    assert ready.json()["components"]["redis"]["status"] == "DOWN"
    response = checkout(api_client, session_id, str(uuid.uuid4()))
    assert response.status_code == 201, response.content
    assert Order.objects.filter(order_number=response.json()["orderNumber"]).exists()
