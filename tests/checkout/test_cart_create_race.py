"""A cart's first add inserts the cart unless it exists: a concurrent first add of the session waits, then joins or starts it.

The other session's insert is held open on a connection of the test's own, so
the add is caught in the middle of it, on a real PostgreSQL.
"""
import threading
import time
import uuid

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from checkout.models import Cart, CartItem
from tests.api import add_to_cart

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 10


def _held_cart_insert(session_id: str) -> tuple[psycopg2.extensions.connection, str]:
    """Insert a cart for the session in a transaction left open; return the connection and the cart's id."""
    other = psycopg2.connect(**connection.get_connection_params())
    cart_id = str(uuid.uuid4())
    now = timezone.now()
    with other.cursor() as cursor:
        cursor.execute(
            "INSERT INTO checkout_cart (id, session_id, created_at, updated_at, expires_at) VALUES (%s, %s, %s, %s, %s)",
            [cart_id, session_id, now, now, now + timezone.timedelta(minutes=30)],
        )
    return other, cart_id


def _add_in_background(session_id: str, product_id) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def add() -> None:
        try:
            outcome["response"] = add_to_cart(APIClient(), session_id, product_id, 1)
        finally:
            connection.close()

    thread = threading.Thread(target=add, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until_blocked_on_a_lock(other) -> None:
    """Wait until a backend other than `other` waits on a lock (the add, on the held insert)."""
    deadline = time.monotonic() + WAIT_SECONDS
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (own,) = cursor.fetchone()
    # Autocommit: each look is a new transaction, with a fresh view of pg_stat_activity.
    watcher = psycopg2.connect(**connection.get_connection_params())
    watcher.autocommit = True
    try:
        with watcher.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND datname = current_database() AND pid <> %s",
                    [own],
                )
                if cursor.fetchone()[0]:
                    return
                time.sleep(0.05)
    finally:
        watcher.close()
    raise AssertionError("the add never waited on the held insert")


@pytest.mark.parametrize("held_insert_ends", ["commit", "rollback"])
def test_a_first_add_racing_another_sessions_insert_waits_and_ends_with_one_cart(session_id, product, held_insert_ends):
    other, held_cart_id = _held_cart_insert(session_id)
    try:
        thread, outcome = _add_in_background(session_id, product.id)
        _wait_until_blocked_on_a_lock(other)
        assert thread.is_alive()
    finally:
        getattr(other, held_insert_ends)()
        other.close()
    thread.join(WAIT_SECONDS)

    response = outcome["response"]
    assert response.status_code == 200, response.content
    cart = Cart.objects.get(session_id=session_id)
    # Committed: the add joined the cart it waited for. Rolled back: it made its own.
    assert (str(cart.id) == held_cart_id) is (held_insert_ends == "commit")
    assert response.json()["id"] == str(cart.id)
    assert [(item.product_id, item.quantity) for item in CartItem.objects.filter(cart=cart)] == [(product.id, 1)]
    assert [item["quantity"] for item in response.json()["items"]] == [1]
