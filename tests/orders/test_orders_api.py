"""Orders per docs/contract.md: public lookup, the manager list with filters and pages, cancel and fulfill."""
import re
import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from orders.models import Order, OrderStatus, PaymentStatus
from orders.services import CustomerInfo, OrderLine, ShippingAddress, order_create
from tests.api import API, add_to_cart, assert_problem, checkout
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

ORDER_NUMBER = re.compile(r"^ORD-\d{8}-\d{6}$")
ORDER_FIELDS = {
    "id",
    "orderNumber",
    "customerInfo",
    "items",
    "subtotal",
    "status",
    "paymentStatus",
    "createdAt",
    "updatedAt",
    "completedAt",
    "paymentUnknownSince",
}
TERMINAL = [OrderStatus.FULFILLED, OrderStatus.CANCELLED, OrderStatus.FAILED]


def checkout_order(client, product, *, quantity: int = 1, **info) -> Order:
    """Place an order through the real cart and checkout API."""
    session_id = f"session-{uuid.uuid4().hex}"
    assert add_to_cart(client, session_id, product.id, quantity).status_code == 200
    response = checkout(client, session_id, key=str(uuid.uuid4()), **info)
    assert response.status_code == 201, response.content
    return Order.objects.get(order_number=response.json()["orderNumber"])


def make_order(*, email: str = "ada@example.com", quantity: int = 1, product=None) -> Order:
    """Create an order directly through the service, skipping the cart."""
    product = product or ProductFactory()
    return order_create(
        customer=CustomerInfo(
            name="Ada Lovelace",
            email=email,
            phone="+15551234567",
            shipping_address=ShippingAddress(
                street="1 Analytical Way", city="London", state="LDN", postal_code="N1 1AA", country="GB"
            ),
        ),
        lines=[
            OrderLine(
                product_id=product.id,
                product_sku=product.sku,
                product_name=product.name,
                quantity=quantity,
                price_snapshot=product.price,
            )
        ],
        cart_id=None,
        correlation_id=None,
    )


def set_status(order: Order, status: str, **fields) -> None:
    Order.objects.filter(id=order.id).update(status=status, **fields)


def created_at(order: Order, moment: str) -> None:
    Order.objects.filter(id=order.id).update(created_at=datetime.fromisoformat(moment))


class TestOrderDetail:
    def test_anyone_reads_an_order_right_after_checkout_as_pending(self, api_client):
        # given
        product = ProductFactory(sku="MUG-001", name="Mug", price=Decimal("19.99"), inventory_quantity=10)
        order = checkout_order(api_client, product, quantity=2)

        # when
        response = api_client.get(f"{API}/orders/{order.order_number}")

        # then
        assert response.status_code == 200
        body = response.json()
        assert ORDER_FIELDS <= set(body)
        assert body["id"] == str(order.id)
        assert body["orderNumber"] == order.order_number
        assert body["status"] == "PENDING"
        assert body["paymentStatus"] == "PENDING"
        assert body["customerInfo"] == {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+15551234567",
            "shippingAddress": {
                "street": "1 Analytical Way",
                "city": "London",
                "state": "LDN",
                "postalCode": "N1 1AA",
                "country": "GB",
            },
        }
        assert len(body["items"]) == 1
        item = body["items"][0]
        assert {key: item[key] for key in item if key != "id"} == {
            "productId": str(product.id),
            "productSku": "MUG-001",
            "productName": "Mug",
            "quantity": 2,
            "priceSnapshot": "19.99",
            "subtotal": "39.98",
        }
        assert body["subtotal"] == "39.98"
        assert body["completedAt"] is None
        assert datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00")).tzinfo is not None

    def test_unknown_order_is_404(self, api_client):
        # when
        response = api_client.get(f"{API}/orders/ORD-20260101-999999")

        # then
        problem = assert_problem(response, 404)
        assert "ORD-20260101-999999" in problem["detail"]

    def test_order_number_has_the_date_and_a_six_digit_daily_sequence(self, api_client, product):
        # when
        first = checkout_order(api_client, product)
        second = checkout_order(api_client, product)

        # then
        today = timezone.now().strftime("%Y%m%d")
        for order in (first, second):
            assert ORDER_NUMBER.match(order.order_number), order.order_number
            assert order.order_number.startswith(f"ORD-{today}-")
        assert int(second.order_number[-6:]) == int(first.order_number[-6:]) + 1

    def test_service_created_orders_of_one_day_are_numbered_consecutively(self):
        # when
        numbers = [make_order().order_number for _ in range(3)]

        # then
        sequence = [int(number[-6:]) for number in numbers]
        assert sequence == [sequence[0], sequence[0] + 1, sequence[0] + 2]
        assert len({number[:13] for number in numbers}) == 1


class TestOrderList:
    url = f"{API}/orders"

    def test_anonymous_is_401(self, api_client):
        make_order()
        response = api_client.get(self.url)
        assert_problem(response, 401)
        assert "content" not in response.json()

    def test_non_manager_is_403(self, customer_client):
        make_order()
        response = customer_client.get(self.url)
        assert_problem(response, 403)
        assert "content" not in response.json()

    def test_newest_first_with_the_page_shape(self, manager_client):
        # given
        oldest, middle, newest = make_order(), make_order(), make_order()
        created_at(oldest, "2026-01-10T12:00:00+00:00")
        created_at(middle, "2026-01-15T12:00:00+00:00")
        created_at(newest, "2026-01-20T12:00:00+00:00")

        # when
        response = manager_client.get(self.url)

        # then
        assert response.status_code == 200
        page = response.json()
        assert set(page) == {"content", "totalElements", "totalPages", "size", "number"}
        assert [order["orderNumber"] for order in page["content"]] == [
            newest.order_number,
            middle.order_number,
            oldest.order_number,
        ]
        assert (page["totalElements"], page["totalPages"], page["size"], page["number"]) == (3, 1, 20, 0)
        assert ORDER_FIELDS <= set(page["content"][0])

    def test_pages(self, manager_client):
        # given
        orders = [make_order() for _ in range(3)]
        for day, order in enumerate(orders, start=1):
            created_at(order, f"2026-01-0{day}T12:00:00+00:00")

        # when
        first = manager_client.get(self.url, {"size": 2}).json()
        second = manager_client.get(self.url, {"size": 2, "page": 1}).json()

        # then
        assert [order["orderNumber"] for order in first["content"]] == [
            orders[2].order_number,
            orders[1].order_number,
        ]
        assert (first["totalElements"], first["totalPages"], first["size"], first["number"]) == (3, 2, 2, 0)
        assert [order["orderNumber"] for order in second["content"]] == [orders[0].order_number]
        assert second["number"] == 1

    @pytest.mark.parametrize("query", [{"size": 0}, {"size": 101}, {"page": -1}, {"status": "SHIPPED"}])
    def test_bad_query_is_400(self, manager_client, query):
        response = manager_client.get(self.url, query)
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == list(query)

    def test_filters_by_status(self, manager_client):
        # given
        pending = make_order()
        paid = make_order()
        set_status(paid, OrderStatus.PAID)

        # when
        response = manager_client.get(self.url, {"status": "PAID"})

        # then
        assert [order["orderNumber"] for order in response.json()["content"]] == [paid.order_number]
        assert pending.order_number not in response.content.decode()

    def test_filters_by_customer_email(self, manager_client):
        # given
        ada = make_order(email="ada@example.com")
        make_order(email="grace@example.com")

        # when
        response = manager_client.get(self.url, {"customerEmail": "ada@example.com"})

        # then
        page = response.json()
        assert [order["orderNumber"] for order in page["content"]] == [ada.order_number]
        assert page["totalElements"] == 1

    def test_combines_filters(self, manager_client):
        # given
        wanted = make_order(email="ada@example.com")
        set_status(wanted, OrderStatus.PAID)
        make_order(email="ada@example.com")
        other = make_order(email="grace@example.com")
        set_status(other, OrderStatus.PAID)

        # when
        response = manager_client.get(self.url, {"status": "PAID", "customerEmail": "ada@example.com"})

        # then
        assert [order["orderNumber"] for order in response.json()["content"]] == [wanted.order_number]

    def dated_orders(self) -> dict[str, Order]:
        orders = {"before": make_order(), "inside": make_order(), "after": make_order()}
        created_at(orders["before"], "2026-01-14T23:59:59+00:00")
        created_at(orders["inside"], "2026-01-15T12:00:00+00:00")
        created_at(orders["after"], "2026-01-16T00:00:00+00:00")
        return orders

    def numbers(self, response) -> list[str]:
        assert response.status_code == 200, response.content
        return [order["orderNumber"] for order in response.json()["content"]]

    def test_date_range_includes_both_whole_days(self, manager_client):
        # given
        orders = self.dated_orders()

        # when: startDate and endDate are the same day
        response = manager_client.get(self.url, {"startDate": "2026-01-15", "endDate": "2026-01-15"})

        # then: the whole of that day is in, the neighbours are out
        assert self.numbers(response) == [orders["inside"].order_number]

    def test_end_date_alone_includes_that_whole_day(self, manager_client):
        # given
        orders = self.dated_orders()

        # when
        response = manager_client.get(self.url, {"endDate": "2026-01-15"})

        # then
        assert self.numbers(response) == [orders["inside"].order_number, orders["before"].order_number]

    def test_start_date_alone_starts_at_midnight(self, manager_client):
        # given
        orders = self.dated_orders()

        # when
        response = manager_client.get(self.url, {"startDate": "2026-01-15"})

        # then
        assert self.numbers(response) == [orders["after"].order_number, orders["inside"].order_number]

    def test_date_time_bounds_are_inclusive(self, manager_client):
        # given
        orders = self.dated_orders()

        # when
        response = manager_client.get(
            self.url, {"startDate": "2026-01-15T12:00:00Z", "endDate": "2026-01-15T12:00:00Z"}
        )

        # then
        assert self.numbers(response) == [orders["inside"].order_number]

    def test_date_time_bound_excludes_an_order_just_outside(self, manager_client):
        # given
        orders = self.dated_orders()

        # when
        response = manager_client.get(
            self.url, {"startDate": "2026-01-15T12:00:01Z", "endDate": "2026-01-16T00:00:00Z"}
        )

        # then
        assert self.numbers(response) == [orders["after"].order_number]

    @pytest.mark.parametrize(
        "query,field",
        [
            ({"startDate": "not-a-date"}, "startDate"),
            ({"endDate": "2026-13-01"}, "endDate"),
            ({"startDate": "2026-02-30"}, "startDate"),
            ({"startDate": "2026-02-30T10:00:00Z"}, "startDate"),
            ({"endDate": "2026-01-15T25:00:00"}, "endDate"),
            ({"startDate": "2026-01-16", "endDate": "2026-01-15"}, "endDate"),
        ],
    )
    def test_invalid_date_is_400_naming_the_field(self, manager_client, query, field):
        # given
        make_order()

        # when
        response = manager_client.get(self.url, query)

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == [field]
        assert "content" not in problem


class TestCancel:
    def url(self, order: Order) -> str:
        return f"{API}/orders/{order.order_number}/cancel"

    def test_manager_cancels_a_pending_order_and_the_stock_comes_back(self, api_client, manager_client):
        # given
        product = ProductFactory(inventory_quantity=10)
        order = checkout_order(api_client, product, quantity=3)
        product.refresh_from_db()
        assert product.inventory_quantity == 7

        # when
        response = manager_client.post(self.url(order), {"reason": "Customer changed their mind"}, format="json")

        # then
        assert response.status_code == 200
        body = response.json()
        assert body["orderNumber"] == order.order_number
        assert body["status"] == "CANCELLED"
        assert body["cancellationReason"] == "Customer changed their mind"
        order.refresh_from_db()
        assert order.status == OrderStatus.CANCELLED
        assert order.cancellation_reason == "Customer changed their mind"
        product.refresh_from_db()
        assert product.inventory_quantity == 10
        assert api_client.get(f"{API}/orders/{order.order_number}").json()["status"] == "CANCELLED"

    def test_manager_cancels_a_processing_order(self, manager_client):
        # given
        product = ProductFactory(inventory_quantity=5)
        order = make_order(product=product, quantity=2)
        set_status(order, OrderStatus.PROCESSING)

        # when
        response = manager_client.post(self.url(order), {"reason": "Fraud check"}, format="json")

        # then
        assert response.status_code == 200
        assert response.json()["status"] == "CANCELLED"
        product.refresh_from_db()
        assert product.inventory_quantity == 7

    @pytest.mark.parametrize("status", [*TERMINAL, OrderStatus.PAID])
    def test_cancel_from_a_state_that_does_not_allow_it_is_409_and_changes_nothing(self, manager_client, status):
        # given
        product = ProductFactory(inventory_quantity=5)
        order = make_order(product=product, quantity=2)
        set_status(order, status)

        # when
        response = manager_client.post(self.url(order), {"reason": "Too late"}, format="json")

        # then
        problem = assert_problem(response, 409)
        assert problem["currentStatus"] == status
        order.refresh_from_db()
        assert order.status == status
        assert order.cancellation_reason == ""
        assert order.completed_at is None
        product.refresh_from_db()
        assert product.inventory_quantity == 5

    @pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "r" * 1001}])
    def test_cancel_without_a_reason_is_400_and_changes_nothing(self, manager_client, body):
        # given
        product = ProductFactory(inventory_quantity=5)
        order = make_order(product=product, quantity=2)

        # when
        response = manager_client.post(self.url(order), body, format="json")

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == ["reason"]
        order.refresh_from_db()
        assert order.status == OrderStatus.PENDING
        product.refresh_from_db()
        assert product.inventory_quantity == 5

    def test_cancel_of_an_unknown_order_is_404(self, manager_client):
        response = manager_client.post(f"{API}/orders/ORD-20260101-999999/cancel", {"reason": "x"}, format="json")
        assert_problem(response, 404)

    def test_anonymous_is_401_and_non_manager_is_403_and_nothing_changes(self, api_client, customer_client):
        # given
        product = ProductFactory(inventory_quantity=5)
        order = make_order(product=product, quantity=2)

        # when
        anonymous = api_client.post(self.url(order), {"reason": "x"}, format="json")
        customer = customer_client.post(self.url(order), {"reason": "x"}, format="json")

        # then
        assert_problem(anonymous, 401)
        assert_problem(customer, 403)
        order.refresh_from_db()
        assert order.status == OrderStatus.PENDING
        assert order.cancellation_reason == ""
        product.refresh_from_db()
        assert product.inventory_quantity == 5


class TestFulfill:
    body = {"trackingNumber": "1Z999AA10123456784", "carrier": "UPS", "notes": "Leave at the door"}

    def url(self, order: Order) -> str:
        return f"{API}/orders/{order.order_number}/fulfill"

    def test_manager_fulfills_a_paid_order(self, manager_client):
        # given
        order = make_order()
        set_status(order, OrderStatus.PAID, payment_status=PaymentStatus.SUCCESS)
        before = timezone.now()

        # when
        response = manager_client.post(self.url(order), self.body, format="json")

        # then
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "FULFILLED"
        assert body["trackingNumber"] == "1Z999AA10123456784"
        assert body["carrier"] == "UPS"
        assert body["completedAt"] is not None
        order.refresh_from_db()
        assert order.status == OrderStatus.FULFILLED
        assert order.tracking_number == "1Z999AA10123456784"
        assert order.carrier == "UPS"
        assert order.fulfillment_notes == "Leave at the door"
        assert before <= order.completed_at <= timezone.now()
        assert datetime.fromisoformat(body["completedAt"].replace("Z", "+00:00")) == order.completed_at

    def test_notes_are_optional(self, manager_client):
        # given
        order = make_order()
        set_status(order, OrderStatus.PAID)

        # when
        response = manager_client.post(self.url(order), {"trackingNumber": "T1", "carrier": "DHL"}, format="json")

        # then
        assert response.status_code == 200
        order.refresh_from_db()
        assert (order.status, order.fulfillment_notes) == (OrderStatus.FULFILLED, "")

    @pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.PROCESSING, *TERMINAL])
    def test_fulfill_from_a_state_other_than_paid_is_409_and_changes_nothing(self, manager_client, status):
        # given
        order = make_order()
        set_status(order, status)

        # when
        response = manager_client.post(self.url(order), self.body, format="json")

        # then
        problem = assert_problem(response, 409)
        assert problem["currentStatus"] == status
        order.refresh_from_db()
        assert order.status == status
        assert (order.tracking_number, order.carrier, order.fulfillment_notes) == ("", "", "")
        assert order.completed_at is None

    @pytest.mark.parametrize("missing", ["trackingNumber", "carrier"])
    def test_missing_field_is_400_and_changes_nothing(self, manager_client, missing):
        # given
        order = make_order()
        set_status(order, OrderStatus.PAID)
        body = {key: value for key, value in self.body.items() if key != missing}

        # when
        response = manager_client.post(self.url(order), body, format="json")

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == [missing]
        order.refresh_from_db()
        assert order.status == OrderStatus.PAID
        assert order.tracking_number == ""

    def test_fulfill_of_an_unknown_order_is_404(self, manager_client):
        response = manager_client.post(f"{API}/orders/ORD-20260101-999999/fulfill", self.body, format="json")
        assert_problem(response, 404)

    def test_anonymous_is_401_and_non_manager_is_403_and_nothing_changes(self, api_client, customer_client):
        # given
        order = make_order()
        set_status(order, OrderStatus.PAID)

        # when
        anonymous = api_client.post(self.url(order), self.body, format="json")
        customer = customer_client.post(self.url(order), self.body, format="json")

        # then
        assert_problem(anonymous, 401)
        assert_problem(customer, 403)
        order.refresh_from_db()
        assert order.status == OrderStatus.PAID
        assert order.tracking_number == ""
