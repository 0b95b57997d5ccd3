"""A checkout's and a cart's first add's statement counts are pinned, so a query added to either shows up here first.

Counted inside the test's transaction: checkout's own transaction is then a
savepoint (SAVEPOINT and RELEASE, 2 of the statements), as in
bench/checkout_profile.py. Served for real it is 2 fewer.
"""
import uuid

import pytest
from django.core.cache import cache

from orders.models import Order
from tests.api import API, add_to_cart, checkout
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

# The idempotency savepoint, its advisory lock and record lookup, the
# operation's savepoint, the cart lock, the items with their products locked,
# one stock update per product, the order number, the order, its items, the
# outbox row, emptying and touching the cart (one statement), the idempotency
# record, and the two releases.
ONE_PRODUCT_STATEMENTS = 15


@pytest.mark.parametrize("products", [1, 3])
def test_checkout_statement_count_is_pinned(api_client, session_id, django_assert_num_queries, products):
    for _ in range(products):
        add_to_cart(api_client, session_id, ProductFactory(inventory_quantity=5).id, 2)

    # Each further product adds its stock update only: items, products and
    # order items are read and written in one statement each, whatever their number.
    with django_assert_num_queries(ONE_PRODUCT_STATEMENTS + products - 1):
        response = checkout(api_client, session_id, str(uuid.uuid4()))

    assert response.status_code == 201, response.content
    assert Order.objects.get(order_number=response.json()["orderNumber"]).items.count() == products


def test_a_replayed_checkout_reads_its_record_only(api_client, session_id, django_assert_num_queries, product):
    add_to_cart(api_client, session_id, product.id, 1)
    key = str(uuid.uuid4())
    first = checkout(api_client, session_id, key)

    # SAVEPOINT, the advisory lock, the record, RELEASE.
    with django_assert_num_queries(4):
        replay = checkout(api_client, session_id, key)

    assert replay.status_code == first.status_code == 201
    assert replay["Idempotent-Replayed"] == "true"


def test_a_carts_first_add_is_pinned_and_answers_what_postgresql_holds(
    api_client, session_id, django_assert_num_queries, product
):
    # The savepoint, the product, the cart's insert (it locks the new row), the item, the release.
    with django_assert_num_queries(5):
        added = add_to_cart(api_client, session_id, product.id, 2)

    assert added.status_code == 200, added.content
    cache.delete(f"cart:{session_id}")
    assert api_client.get(f"{API}/carts/{session_id}").json() == added.json()
