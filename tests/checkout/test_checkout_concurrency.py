"""No oversell under concurrency: the database, not the process, guards stock."""
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Product
from checkout.models import Cart, CartItem
from orders.models import Order
from outbox.models import OutboxEvent
from tests.api import checkout
from tests.factories import ProductFactory

CUSTOMERS = 200
STOCK = 50
# Requests in flight at once: enough to contend hard, within PostgreSQL's 100 connections.
PARALLEL = 40


@pytest.mark.django_db(transaction=True)
@pytest.mark.many_connections
def test_200_concurrent_checkouts_over_50_units_sell_exactly_50():
    product = ProductFactory(sku="HOT-ITEM", inventory_quantity=STOCK, price=Decimal("5.00"))
    sessions = [f"buyer-{index}-{uuid.uuid4().hex[:8]}" for index in range(CUSTOMERS)]
    expires = timezone.now() + timezone.timedelta(minutes=30)
    for session in sessions:
        cart = Cart.objects.create(session_id=session, expires_at=expires)
        CartItem.objects.create(cart=cart, product=product, quantity=1, price_snapshot=product.price)
    start = threading.Barrier(PARALLEL)

    def buy(index: int):
        if index < PARALLEL:
            start.wait()
        try:
            response = checkout(APIClient(), sessions[index], str(uuid.uuid4()))
            return response.status_code, response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        results = list(pool.map(buy, range(CUSTOMERS)))

    statuses = [status for status, _ in results]
    assert statuses.count(201) == STOCK
    assert statuses.count(409) == CUSTOMERS - STOCK
    losers = [body for status, body in results if status == 409]
    assert all("HOT-ITEM" in body["detail"] for body in losers)
    product.refresh_from_db()
    assert product.inventory_quantity == 0
    assert Order.objects.count() == STOCK
    assert OutboxEvent.objects.count() == STOCK
    assert len(set(Order.objects.values_list("order_number", flat=True))) == STOCK
    # Every loser's cart is untouched; every winner's is empty.
    assert CartItem.objects.count() == CUSTOMERS - STOCK
    assert Product.objects.filter(inventory_quantity__lt=0).count() == 0
