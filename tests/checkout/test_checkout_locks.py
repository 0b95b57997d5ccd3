"""Checkouts wait for one another only over the products they share.

Each test holds one side's transaction open on a connection of its own and
runs the other side with a lock timeout: waiting would fail it.
"""
import random
import threading
import uuid
from datetime import date, timedelta

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from catalog.inventory import stock_take
from catalog.models import Product
from checkout.models import CartItem
from orders.models import Order
from outbox.models import OutboxEvent
from tests.api import add_to_cart, checkout
from tests.factories import ProductFactory
from tests.support import other_session

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def far_day() -> date:
    """A day no other test (nor an earlier run on a reused database) numbers orders on: its sequences are this test's."""
    return date(2200, 1, 1) + timedelta(days=32 * random.randrange(80_000))


def _number(cursor, day: date) -> int:
    cursor.execute("SELECT orders_number_next(%s)", [day])
    return cursor.fetchone()[0]


def test_an_order_number_taken_in_an_open_transaction_does_not_hold_up_the_next(far_day):
    day = far_day
    with other_session(lock_timeout="2s") as earlier:
        _number(earlier, day - timedelta(days=1))  # the day before created this day's sequence
        earlier.connection.commit()
    with other_session(lock_timeout="2s") as first, other_session(lock_timeout="500ms") as second:
        taken = _number(first, day)
        # The first checkout has not committed (its WAL flush still to come): the second does not wait for it.
        assert _number(second, day) == taken + 1


def test_two_first_orders_of_a_day_with_no_order_the_day_before_both_get_a_number(far_day):
    day = far_day
    with other_session(lock_timeout="2s") as first:
        assert _number(first, day) == 1  # created the day's sequence, not committed yet
        answers: list[int | BaseException] = []

        def second() -> None:
            try:
                with other_session(lock_timeout="10s") as cursor:
                    answers.append(_number(cursor, day))
                    cursor.connection.commit()
            except BaseException as error:  # noqa: BLE001 - reported by the assertion below
                answers.append(error)

        waiting = threading.Thread(target=second)
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # its CREATE waits for the first transaction's
        first.connection.commit()
        waiting.join(10)
    assert answers == [2]


def test_tomorrows_sequence_is_made_a_day_ahead_and_those_over_a_week_old_dropped(far_day):
    old, kept, today = far_day, far_day + timedelta(days=11), far_day + timedelta(days=18)
    with other_session(lock_timeout="2s") as cursor:
        for day in (old, kept, today):
            _number(cursor, day)
        cursor.execute("SELECT sequencename FROM pg_sequences WHERE sequencename LIKE 'orders_number_%'")
        names = {name for (name,) in cursor.fetchall()}
    assert f"orders_number_{old:%Y%m%d}" not in names
    assert f"orders_number_{old + timedelta(days=1):%Y%m%d}" not in names  # old's "tomorrow"
    tomorrow = today + timedelta(days=1)
    assert {f"orders_number_{kept:%Y%m%d}", f"orders_number_{today:%Y%m%d}", f"orders_number_{tomorrow:%Y%m%d}"} <= names


def test_an_order_finding_tomorrows_sequence_being_made_does_not_wait_for_it(far_day):
    day = far_day
    with other_session(lock_timeout="2s") as earlier:
        _number(earlier, day - timedelta(days=1))  # made today's sequence; tomorrow's is still to make
        earlier.connection.commit()
    with other_session(lock_timeout="2s") as first, other_session(lock_timeout="500ms") as second:
        assert _number(first, day) == 1  # and made tomorrow's, not committed yet
        assert _number(second, day) == 2


def test_a_cart_add_commits_while_a_checkout_holds_the_products_stock():
    product = ProductFactory(inventory_quantity=5)
    with transaction.atomic():
        assert stock_take(wanted={product.id: 1}) == []  # checkout's last write: the row locked until its commit
        with other_session(lock_timeout="500ms") as cart_add:
            cart = uuid.uuid4()
            cart_add.execute(
                "INSERT INTO checkout_cart (id, session_id, created_at, updated_at, expires_at)"
                " VALUES (%s, %s, now(), now(), now() + interval '1 hour')",
                [str(cart), f"s-{cart.hex}"],
            )
            cart_add.execute(
                "INSERT INTO checkout_cartitem (id, cart_id, product_id, quantity, price_snapshot, created_at, updated_at)"
                " VALUES (%s, %s, %s, 1, 1.00, now(), now())",
                [str(uuid.uuid4()), str(cart), str(product.id)],
            )
            cart_add.connection.commit()  # the deferred foreign key check runs here


def test_stock_sold_between_the_checkouts_read_and_its_take_refuses_it_and_undoes_the_order(api_client, session_id):
    product = ProductFactory(sku="LAST-ONE", inventory_quantity=1)
    add_to_cart(api_client, session_id, product.id, 1)
    answers = []
    with other_session(lock_timeout="2s") as rival:
        # Another checkout took the last unit and has not committed: this checkout still reads 1 in stock.
        rival.execute(f"UPDATE {Product._meta.db_table} SET inventory_quantity = 0 WHERE id = %s", [str(product.id)])
        racing = threading.Thread(target=lambda: answers.append(checkout(APIClient(), session_id, str(uuid.uuid4()))))
        racing.start()
        racing.join(1.0)
        assert racing.is_alive()  # its order written, waiting at the stock take for the rival's row lock
        rival.connection.commit()
        racing.join(10)
    (answer,) = answers
    assert answer.status_code == 409
    assert answer.json()["products"] == [
        {"productId": str(product.id), "productSku": "LAST-ONE", "requested": 1, "available": 0}
    ]
    assert not Order.objects.exists() and not OutboxEvent.objects.exists()
    assert CartItem.objects.filter(cart__session_id=session_id).count() == 1
