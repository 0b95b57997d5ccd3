"""Checkout per docs/contract.md "Checkout": one transaction, stock, the OrderCreated outbox row."""
import re
import uuid
from decimal import Decimal

import pytest

from catalog.models import Product
from checkout.models import Cart, CartItem
from orders.models import Order, OrderItem
from outbox.models import OutboxEvent, OutboxStatus
from tests.api import API, add_to_cart, checkout
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def key() -> str:
    return str(uuid.uuid4())


class TestCheckoutSucceeds:
    def test_creates_pending_order_outbox_row_and_clears_cart(self, api_client, session_id):
        book = ProductFactory(sku="BOOK-1", price=Decimal("10.50"), inventory_quantity=5)
        mug = ProductFactory(sku="MUG-1", price=Decimal("4.25"), inventory_quantity=3)
        add_to_cart(api_client, session_id, book.id, 2)
        add_to_cart(api_client, session_id, mug.id, 3)

        response = checkout(api_client, session_id, key(), name="Grace Hopper", email="grace@example.com")

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "PENDING"
        assert re.fullmatch(r"ORD-\d{8}-\d{6}", body["orderNumber"])
        assert body["message"]
        order = Order.objects.get(order_number=body["orderNumber"])
        assert order.status == "PENDING" and order.payment_status == "PENDING"
        assert order.subtotal == Decimal("33.75")
        assert sorted(OrderItem.objects.filter(order=order).values_list("product_sku", "quantity")) == [
            ("BOOK-1", 2),
            ("MUG-1", 3),
        ]
        book.refresh_from_db()
        mug.refresh_from_db()
        assert (book.inventory_quantity, mug.inventory_quantity) == (3, 0)
        assert CartItem.objects.filter(cart__session_id=session_id).count() == 0
        assert api_client.get(f"{API}/carts/{session_id}").json()["items"] == []

        event = OutboxEvent.objects.get()
        assert event.status == OutboxStatus.PENDING
        assert (event.topic, event.key, event.event_type) == ("orders.created", str(order.id), "ORDER_CREATED")
        assert event.headers == {
            "event_id": str(event.event_id),
            "event_type": "ORDER_CREATED",
            "correlation_id": response["X-Correlation-ID"],
        }

    def test_order_created_payload_has_the_spec_shape(self, api_client, session_id):
        product = ProductFactory(sku="BOOK-1", name="Book", price=Decimal("19.99"))
        add_to_cart(api_client, session_id, product.id, 2)
        response = api_client.post(
            f"{API}/checkout",
            {
                "sessionId": session_id,
                "customerInfo": {
                    "name": "Ada",
                    "email": "ada@example.com",
                    "phone": "+15551234567",
                    "shippingAddress": {
                        "street": "1 Way",
                        "city": "London",
                        "state": "LDN",
                        "postalCode": "N1",
                        "country": "GB",
                    },
                },
            },
            format="json",
            HTTP_IDEMPOTENCY_KEY=key(),
            HTTP_X_CORRELATION_ID="corr-123",
        )
        assert response.status_code == 201
        order = Order.objects.get()
        cart = Cart.objects.get(session_id=session_id)
        payload = OutboxEvent.objects.get().payload
        assert set(payload) == {
            "eventId", "eventType", "eventVersion", "timestamp", "correlationId", "orderId",
            "orderNumber", "customer", "items", "subtotal", "cartId",
        }  # fmt: skip
        assert payload["eventId"] == str(OutboxEvent.objects.get().event_id)
        assert payload["eventType"] == "ORDER_CREATED"
        assert payload["eventVersion"] == "1.0"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", payload["timestamp"])
        assert payload["correlationId"] == "corr-123"
        assert payload["orderId"] == str(order.id)
        assert payload["orderNumber"] == order.order_number
        assert payload["cartId"] == str(cart.id)
        assert payload["customer"] == {
            "name": "Ada",
            "email": "ada@example.com",
            "phone": "+15551234567",
            "shippingAddress": {"street": "1 Way", "city": "London", "state": "LDN", "postalCode": "N1", "country": "GB"},
        }
        assert payload["items"] == [
            {
                "productId": str(product.id),
                "productSku": "BOOK-1",
                "productName": "Book",
                "quantity": 2,
                "priceSnapshot": "19.99",
                "subtotal": "39.98",
            }
        ]
        assert payload["subtotal"] == "39.98"

    def test_order_numbers_are_consecutive_within_a_day(self, api_client):
        product = ProductFactory(inventory_quantity=10)
        numbers = []
        for _ in range(3):
            session = f"s-{uuid.uuid4().hex}"
            add_to_cart(api_client, session, product.id, 1)
            numbers.append(checkout(api_client, session, key()).json()["orderNumber"])
        sequence = [int(number.rsplit("-", 1)[1]) for number in numbers]
        assert sequence == [sequence[0], sequence[0] + 1, sequence[0] + 2]


def assert_nothing_happened(session_id: str, products: dict[uuid.UUID, int], cart_items: int) -> None:
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert CartItem.objects.filter(cart__session_id=session_id).count() == cart_items
    for product_id, quantity in products.items():
        assert Product.objects.get(id=product_id).inventory_quantity == quantity


class TestCheckoutFails:
    def test_insufficient_stock_is_409_naming_products_and_changes_nothing(self, api_client, session_id):
        plenty = ProductFactory(sku="PLENTY", inventory_quantity=10)
        scarce = ProductFactory(sku="SCARCE", inventory_quantity=5)
        add_to_cart(api_client, session_id, plenty.id, 2)
        add_to_cart(api_client, session_id, scarce.id, 5)
        Product.objects.filter(id=scarce.id).update(inventory_quantity=1)  # sold elsewhere meanwhile

        response = checkout(api_client, session_id, key())

        assert response.status_code == 409
        assert response["Content-Type"] == "application/problem+json"
        problem = response.json()
        assert "SCARCE" in problem["detail"] and "PLENTY" not in problem["detail"]
        assert problem["products"] == [
            {"productId": str(scarce.id), "productSku": "SCARCE", "requested": 5, "available": 1}
        ]
        assert_nothing_happened(session_id, {plenty.id: 10, scarce.id: 1}, cart_items=2)

    def test_deactivated_product_cannot_be_bought(self, api_client, session_id):
        product = ProductFactory(sku="GONE", inventory_quantity=10)
        add_to_cart(api_client, session_id, product.id, 1)
        Product.objects.filter(id=product.id).update(is_active=False)
        response = checkout(api_client, session_id, key())
        assert response.status_code == 409
        assert "GONE" in response.json()["detail"]
        assert_nothing_happened(session_id, {product.id: 10}, cart_items=1)

    def test_unknown_cart_is_400(self, api_client, db):
        response = checkout(api_client, "no-such-session", key())
        assert response.status_code == 400
        assert Order.objects.count() == 0 and OutboxEvent.objects.count() == 0

    def test_empty_cart_is_400(self, api_client, session_id):
        product = ProductFactory()
        item = add_to_cart(api_client, session_id, product.id, 1).json()["items"][0]
        api_client.delete(f"{API}/carts/{session_id}/items/{item['id']}")
        response = checkout(api_client, session_id, key())
        assert response.status_code == 400
        assert "empty" in response.json()["detail"]
        assert_nothing_happened(session_id, {product.id: 100}, cart_items=0)

    @pytest.mark.parametrize(
        "overrides,field",
        [
            ({"email": "not-an-email"}, "customerInfo.email"),
            ({"phone": "12345"}, "customerInfo.phone"),
            ({"phone": "+1-555-123-4567"}, "customerInfo.phone"),
            ({"name": "n" * 201}, "customerInfo.name"),
            ({"shippingAddress": {"street": "1 Way"}}, "customerInfo.shippingAddress.city"),
        ],
    )
    def test_invalid_customer_info_is_400_with_field_errors(self, api_client, session_id, overrides, field):
        product = ProductFactory(inventory_quantity=10)
        add_to_cart(api_client, session_id, product.id, 2)
        response = checkout(api_client, session_id, key(), **overrides)
        assert response.status_code == 400
        assert field in response.json()["errors"]
        assert_nothing_happened(session_id, {product.id: 10}, cart_items=1)
