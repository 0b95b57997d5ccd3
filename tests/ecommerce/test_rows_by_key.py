"""The hot paths' single-row statements (core.db) write and read what the ORM would.

Each helper is compared with the ORM call it replaces, on the models the
order path writes: the same columns stored (defaults, `auto_now` stamps, JSON,
decimals, UUIDs, a foreign key), the same values read back with the same
types, and `rows_with_related` reads the related rows with them, in the
related rows' key order, locking nothing.
"""
import uuid
from datetime import timedelta
from decimal import Decimal

import psycopg2
import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Product
from checkout.models import Cart, CartItem, IdempotencyRecord
from core.db import row_get, row_insert, row_update, rows_insert, rows_with_related
from orders.models import Order, OrderItem, PaymentTransaction, ProcessedEvent
from outbox.models import OutboxEvent
from tests.factories import ProductFactory
from tests.support import other_session

TIMESTAMPS = {"created_at", "updated_at", "processed_at", "published_at"}


def _stored(model: type[Model], pk) -> dict:
    return model.objects.filter(pk=pk).values()[0]


def _attributes(instance: Model) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def _order(**overrides) -> Order:
    values = dict(
        order_number=f"ORD-{uuid.uuid4().hex[:12]}",
        customer_name="Row Customer",
        customer_email="row@example.com",
        customer_phone="+15551234567",
        shipping_address={"street": "1 Row Way", "city": "London", "postalCode": "N1 1AA", "country": "GB"},
        subtotal=Decimal("39.98"),
        correlation_id="corr-1",
    )
    return Order(**(values | overrides))


def _pairs(product) -> list[tuple[Model, Model]]:
    """Pairs of unsaved instances alike but for their keys: the ORM saves the first, core.db the second."""
    orders = (_order(), _order())
    for order in orders:
        order.save()
    event_ids = (uuid.uuid4(), uuid.uuid4())
    expires = timezone.now() + timedelta(hours=1)
    return [
        (_order(), _order()),
        *[
            (
                OrderItem(order=orders[0], product_id=product.id, product_sku="SKU", product_name="P", quantity=2,
                          price_snapshot=Decimal("19.99"), subtotal=Decimal("39.98")),
                OrderItem(order=orders[0], product_id=product.id, product_sku="SKU", product_name="P", quantity=2,
                          price_snapshot=Decimal("19.99"), subtotal=Decimal("39.98")),
            )
        ],
        tuple(
            OutboxEvent(event_id=event_id, aggregate_type="order", aggregate_id="a", topic="t", key="k",
                        event_type="OrderCreated", payload={"amount": Decimal("1.50"), "n": [1, "x"]}, headers={"h": "v"})
            for event_id in event_ids
        ),
        tuple(ProcessedEvent(event_id=uuid.uuid4(), event_type="OrderCreated", topic="t", outcome="PROCESSED") for _ in "ab"),
        tuple(
            PaymentTransaction(order=order, amount=Decimal("39.98"), status="SUCCESS", external_transaction_id="ch_1",
                               attempt_count=1)
            for order in orders
        ),
        tuple(
            IdempotencyRecord(key=f"key-{uuid.uuid4()}", fingerprint="f", method="POST", path="/p", response_status=201,
                              response_body={"orderNumber": "ORD-1"}, expires_at=expires)
            for _ in "ab"
        ),
    ]  # fmt: skip


@pytest.mark.django_db
def test_row_insert_stores_what_save_stores_and_row_get_reads_what_the_orm_reads():
    product = ProductFactory()
    for by_orm, by_rows in _pairs(product):
        model = type(by_orm)
        by_orm.save(force_insert=True)
        row_insert(by_rows)
        assert not by_rows._state.adding and by_rows.pk is not None
        orm_row, rows_row = _stored(model, by_orm.pk), _stored(model, by_rows.pk)
        assert rows_row.keys() == orm_row.keys()
        for column, value in orm_row.items():
            if column in TIMESTAMPS:
                assert (value is None) == (rows_row[column] is None), (model, column)
            elif column != model._meta.pk.attname and column not in ("key", "order_number", "event_id", "order_id"):
                assert rows_row[column] == value, (model, column)
        # The instance carries what was stored: stamps and a key from the database.
        assert {k: v for k, v in _attributes(by_rows).items() if k != "payload"} == {
            k: v for k, v in _attributes(model.objects.get(pk=by_rows.pk)).items() if k != "payload"
        }

        read = row_get(model, model._meta.pk.name, by_rows.pk)
        expected = model.objects.get(pk=by_rows.pk)
        assert _attributes(read) == _attributes(expected)
        assert [type(value) for value in _attributes(read).values()] == [type(v) for v in _attributes(expected).values()]
        assert not read._state.adding and read._state.db == "default"


@pytest.mark.django_db
def test_rows_insert_writes_many_in_one_statement():
    product = ProductFactory()
    order = _order()
    order.save()
    items = [
        OrderItem(order=order, product_id=product.id, product_sku=f"S{n}", product_name="P", quantity=n,
                  price_snapshot=Decimal("1.00"), subtotal=Decimal(n))
        for n in (1, 2, 3)
    ]  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        rows_insert(items)
    assert len(queries.captured_queries) == 1
    assert sorted(order.items.values_list("product_sku", "quantity")) == [("S1", 1), ("S2", 2), ("S3", 3)]


@pytest.mark.django_db
def test_row_get_by_a_unique_field_and_refuses_one_that_is_not():
    record = IdempotencyRecord(key="the-key", fingerprint="f", method="POST", path="/p", response_status=201,
                               response_body={}, expires_at=timezone.now())  # fmt: skip
    row_insert(record)
    assert row_get(IdempotencyRecord, "key", "the-key").pk == record.pk
    assert row_get(IdempotencyRecord, "key", "no-such-key") is None
    with pytest.raises(ValueError):
        row_get(IdempotencyRecord, "fingerprint", "f")
    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert(IdempotencyRecord(key="the-key", fingerprint="g", method="POST", path="/p", response_status=201,
                                     response_body={}, expires_at=timezone.now()))  # fmt: skip


@pytest.mark.django_db
def test_row_update_writes_the_named_fields_and_stamps_updated_at_as_save_does():
    order = _order()
    order.save()
    before = Order.objects.get(pk=order.pk)
    order.status, order.payment_charge_requests, order.customer_name = "PROCESSING", 3, "not written"
    row_update(order, ["status", "payment_charge_requests", "updated_at"])
    after = Order.objects.get(pk=order.pk)
    assert (after.status, after.payment_charge_requests, after.customer_name) == ("PROCESSING", 3, before.customer_name)
    assert after.updated_at > before.updated_at and after.updated_at == order.updated_at

    order.status = "PAID"
    row_update(order, ["status"])  # without updated_at named, as save(update_fields=...) leaves it
    assert Order.objects.get(pk=order.pk).updated_at == after.updated_at

    Order.objects.filter(pk=order.pk).delete()
    with pytest.raises(DatabaseError):
        row_update(order, ["status"])


def _other_session_can_lock(table: str, pk) -> bool:
    """Whether another session could lock the row now (NOWAIT: no waiting)."""
    with other_session() as cursor:
        try:
            cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [str(pk)])
            return cursor.fetchone() is not None
        except psycopg2.errors.LockNotAvailable:
            return False


@pytest.mark.django_db(transaction=True)
def test_rows_with_related_reads_the_related_rows_in_key_order_and_locks_nothing():
    products = sorted((ProductFactory() for _ in range(3)), key=lambda product: product.id)
    cart = Cart.objects.create(session_id=f"rows-{uuid.uuid4()}", expires_at=timezone.now() + timedelta(hours=1))
    for product in reversed(products):  # added in the opposite order to the key order
        CartItem.objects.create(cart=cart, product=product, quantity=1, price_snapshot=product.price)
    other_cart = Cart.objects.create(session_id=f"rows-{uuid.uuid4()}", expires_at=timezone.now() + timedelta(hours=1))
    outsider = ProductFactory()
    CartItem.objects.create(cart=other_cart, product=outsider, quantity=1, price_snapshot=outsider.price)
    products_table, items_table = Product._meta.db_table, CartItem._meta.db_table
    with transaction.atomic():
        items = rows_with_related(CartItem, "cart", cart.id, related="product")
        assert [item.product_id for item in items] == [product.id for product in products]
        # The related rows came with the statement: reading them sends nothing more.
        with CaptureQueriesContext(connection) as queries:
            assert [item.product.sku for item in items] == [product.sku for product in products]
        assert queries.captured_queries == []
        assert [_attributes(item.product) for item in items] == [
            _attributes(Product.objects.get(pk=product.pk)) for product in products
        ]
        assert all(_other_session_can_lock(products_table, product.id) for product in products)
        assert all(_other_session_can_lock(items_table, item.id) for item in items)
