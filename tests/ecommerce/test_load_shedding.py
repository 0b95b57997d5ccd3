"""A saturated web tier sheds: gunicorn as configured, for real, in a subprocess.

The server runs one process with an in-flight limit of two API requests.
The test saturates it with checkouts that really wait inside the server: it
holds their carts' row locks in a transaction of its own, so each checkout
blocks in PostgreSQL while keeping its slot. Everything else sent meanwhile
must be refused fast (after the queue's quarter second at most) with 503
problem+json and Retry-After; health and /metrics still answer; once the
locks go, the admitted checkouts succeed and a refused one retried with its
Idempotency-Key goes through, exactly once. A second server lets a request
wait for a slot: it is served when one frees, and the queue's one place
taken, the next request is refused at once.
"""
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg2
import pytest
import requests
from django.utils import timezone

from checkout.models import Cart, CartItem
from orders.models import Order
from tests.api import customer_info
from tests.factories import ProductFactory
from tests.servers import database_url
from tests.servers import gunicorn_server as gunicorn_server_process

pytestmark = pytest.mark.django_db(transaction=True)

API = "/api/v1"
LIMIT = 2
# Generous for a shared 2-core machine; a request that queued behind the
# blocked checkouts would wait until the locks go (many seconds).
FAST_SECONDS = 1.0


@pytest.fixture
def gunicorn_server() -> Iterator[str]:
    """gunicorn started with gunicorn.conf.py, one process, an in-flight limit of two."""
    with gunicorn_server_process(
        WEB_CONCURRENCY="1", WEB_SHED_MAX_IN_FLIGHT=str(LIMIT), WEB_SHED_RETRY_AFTER_SECONDS="2"
    ) as base:
        yield base


def cart_with_item(product) -> str:
    session_id = f"shed-{uuid.uuid4().hex}"
    cart = Cart.objects.create(session_id=session_id, expires_at=timezone.now() + timedelta(hours=1))
    CartItem.objects.create(cart=cart, product=product, quantity=1, price_snapshot=product.price)
    return session_id


def post_checkout(base: str, session_id: str, key: str) -> requests.Response:
    return requests.post(
        f"{base}{API}/checkout",
        json={"sessionId": session_id, "customerInfo": customer_info()},
        headers={"Idempotency-Key": key},
        timeout=60,
    )


def lock_waiters(dsn: str) -> int:
    """Count the server's statements waiting for a row lock."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def timed(call) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_shed(response: requests.Response, seconds: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.headers["Retry-After"] == "2"
    body = response.json()
    assert body["status"] == 503 and body["type"].endswith("/overloaded"), body
    assert seconds < FAST_SECONDS, seconds


def test_a_saturated_server_refuses_the_excess_fast_and_finishes_what_it_admitted(gunicorn_server):
    product = ProductFactory(inventory_quantity=10)
    held = [cart_with_item(product) for _ in range(LIMIT)]
    spare = cart_with_item(product)
    dsn = database_url()
    locker = psycopg2.connect(dsn)
    pool = ThreadPoolExecutor(max_workers=LIMIT)
    try:
        # given: two checkouts inside the server, each blocked on its cart's row lock
        with locker.cursor() as cursor:
            cursor.execute("SELECT id FROM checkout_cart WHERE session_id = ANY(%s) FOR UPDATE", [held])
        # One checkout in flight: a non-checkout request may not take the last slot.
        admitted = [pool.submit(post_checkout, gunicorn_server, held[0], f"held-{held[0]}")]
        deadline = time.monotonic() + 30
        while lock_waiters(dsn) < 1:
            assert time.monotonic() < deadline, "the first checkout never reached its lock"
            time.sleep(0.05)
        assert_shed(*timed(lambda: requests.get(f"{gunicorn_server}{API}/products", timeout=30)))
        # ...but a checkout may.
        admitted.append(pool.submit(post_checkout, gunicorn_server, held[1], f"held-{held[1]}"))
        while lock_waiters(dsn) < LIMIT:
            assert time.monotonic() < deadline, "the second checkout never reached its lock"
            time.sleep(0.05)

        # when: more requests arrive, a checkout among them
        refused_key = f"spare-{spare}"
        refused = [timed(lambda: post_checkout(gunicorn_server, spare, refused_key))]
        for _ in range(5):
            refused.append(timed(lambda: requests.get(f"{gunicorn_server}{API}/products", timeout=30)))
            refused.append(
                timed(
                    lambda: requests.post(
                        f"{gunicorn_server}{API}/carts/shed-extra/items",
                        json={"productId": str(product.id), "quantity": 1},
                        timeout=30,
                    )
                )
            )
        live = requests.get(f"{gunicorn_server}/health/live", timeout=FAST_SECONDS)
        metrics = requests.get(f"{gunicorn_server}/metrics", timeout=5)

        # then: each is refused fast with a problem and Retry-After; health and metrics answer
        for response, seconds in refused:
            assert_shed(response, seconds)
        assert live.status_code == 200
        assert metrics.status_code == 200
        # The catalog read refused at one checkout in flight, and the eleven above.
        assert "http_requests_shed_total 12.0" in metrics.text
        assert all(not future.done() for future in admitted), "the admitted checkouts were not held"
    finally:
        locker.rollback()
        locker.close()
        pool.shutdown(wait=True)

    # and: the admitted checkouts succeed once their locks go
    assert [future.result().status_code for future in admitted] == [201, 201]
    # and: the refused checkout did nothing; retried with its key, it goes through once
    assert not Order.objects.filter(cart_id=Cart.objects.get(session_id=spare).id).exists()
    retried = post_checkout(gunicorn_server, spare, refused_key)
    assert retried.status_code == 201, retried.text
    replayed = post_checkout(gunicorn_server, spare, refused_key)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert Order.objects.count() == LIMIT + 1


@pytest.fixture
def queueing_server() -> Iterator[str]:
    """One process, two slots, one request may wait for a slot for up to five seconds."""
    with gunicorn_server_process(
        WEB_CONCURRENCY="1",
        WEB_SHED_MAX_IN_FLIGHT=str(LIMIT),
        WEB_SHED_QUEUE_SECONDS="5",
        WEB_SHED_MAX_QUEUED="1",
        WEB_SHED_RETRY_AFTER_SECONDS="2",
    ) as base:
        yield base


def test_a_request_that_finds_every_slot_taken_waits_for_one_and_the_queue_is_bounded(queueing_server):
    product = ProductFactory(inventory_quantity=10)
    held = [cart_with_item(product) for _ in range(LIMIT)]
    waiting = cart_with_item(product)
    dsn = database_url()
    lockers = [psycopg2.connect(dsn) for _ in held]
    pool = ThreadPoolExecutor(max_workers=LIMIT + 1)
    try:
        # given: both slots taken by checkouts blocked on their carts' row locks, each lock its own transaction
        for locker, session_id in zip(lockers, held):
            with locker.cursor() as cursor:
                cursor.execute("SELECT id FROM checkout_cart WHERE session_id = %s FOR UPDATE", [session_id])
        admitted = [pool.submit(post_checkout, queueing_server, session_id, f"held-{session_id}") for session_id in held]
        deadline = time.monotonic() + 30
        while lock_waiters(dsn) < LIMIT:
            assert time.monotonic() < deadline, "the checkouts never reached their locks"
            time.sleep(0.05)

        # when: a checkout arrives, and then another request while it waits
        queued = pool.submit(timed, lambda: post_checkout(queueing_server, waiting, f"queued-{waiting}"))
        time.sleep(0.5)
        refused = timed(lambda: requests.get(f"{queueing_server}{API}/products", timeout=30))

        # then: the queue's one place is taken, so the second is refused at once, and the first still waits
        assert_shed(*refused)
        assert not queued.done(), "the checkout that found every slot taken was not kept waiting"

        # when: one slot frees
        lockers[0].rollback()

        # then: the waiting checkout is admitted and served, well within its wait
        response, seconds = queued.result(timeout=30)
        assert response.status_code == 201, response.text
        assert seconds < 5
        assert admitted[0].result(timeout=30).status_code == 201
        metrics = requests.get(f"{queueing_server}/metrics", timeout=5).text
        assert "http_requests_queued_total 1.0" in metrics
        assert "http_requests_shed_total 1.0" in metrics
    finally:
        for locker in lockers:
            locker.rollback()
            locker.close()
        pool.shutdown(wait=True)
    assert admitted[1].result().status_code == 201
    assert Order.objects.count() == LIMIT + 1
