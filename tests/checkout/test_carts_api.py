"""Guest carts per docs/contract.md "Endpoints": create on first add, items, stock limits, expiry, the Redis copy."""
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone

from checkout.models import Cart, CartItem
from tests.api import API, add_to_cart, assert_problem
from tests.factories import ProductFactory

# Transactional on purpose: every cart write drops the cached copy in
# `transaction.on_commit`, which never fires inside the rolled-back transaction
# of a plain `django_db` test, so such a test would read stale carts from Redis.
pytestmark = pytest.mark.django_db(transaction=True)

CART_FIELDS = {"id", "sessionId", "items", "subtotal", "createdAt", "updatedAt", "expiresAt"}
IDLE_TTL = timedelta(minutes=30)


def cart_url(session_id: str) -> str:
    return f"{API}/carts/{session_id}"


def item_url(session_id: str, item_id) -> str:
    return f"{API}/carts/{session_id}/items/{item_id}"


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cart_item_quantities(session_id: str) -> dict[str, int]:
    return {
        str(item.product_id): item.quantity for item in CartItem.objects.filter(cart__session_id=session_id)
    }


class TestAddItem:
    def test_first_add_creates_the_cart_and_returns_its_full_shape(self, api_client, session_id):
        # given
        product = ProductFactory(sku="MUG-001", name="Mug", price=Decimal("19.99"), inventory_quantity=10)

        # when
        response = add_to_cart(api_client, session_id, product.id, quantity=2)

        # then
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == CART_FIELDS
        cart = Cart.objects.get(session_id=session_id)
        assert body["id"] == str(cart.id)
        assert body["sessionId"] == session_id
        item = CartItem.objects.get(cart=cart)
        assert body["items"] == [
            {
                "id": str(item.id),
                "productId": str(product.id),
                "productSku": "MUG-001",
                "productName": "Mug",
                "quantity": 2,
                "priceSnapshot": "19.99",
                "subtotal": "39.98",
            }
        ]
        assert body["subtotal"] == "39.98"
        for field in ("createdAt", "updatedAt", "expiresAt"):
            assert parse_time(body[field]).tzinfo is not None
        # The answer is built from what the write holds, not read back: it must
        # be what PostgreSQL has, to the microsecond.
        cache.delete(f"cart:{session_id}")
        assert api_client.get(cart_url(session_id)).json() == body

    def test_adding_the_same_product_again_increments_its_quantity(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id, quantity=2)

        # when
        response = add_to_cart(api_client, session_id, product.id, quantity=3)

        # then
        assert response.status_code == 200
        body = response.json()
        assert [(item["productId"], item["quantity"]) for item in body["items"]] == [(str(product.id), 5)]
        assert body["subtotal"] == "99.95"
        assert CartItem.objects.filter(cart__session_id=session_id).count() == 1

    def test_two_products_make_two_items_and_the_subtotal_adds_up(self, api_client, session_id):
        # given
        mug = ProductFactory(price=Decimal("19.99"))
        pen = ProductFactory(price=Decimal("0.50"))

        # when
        add_to_cart(api_client, session_id, mug.id, quantity=1)
        response = add_to_cart(api_client, session_id, pen.id, quantity=3)

        # then
        body = response.json()
        assert [(item["productId"], item["subtotal"]) for item in body["items"]] == [
            (str(mug.id), "19.99"),
            (str(pen.id), "1.50"),
        ]
        assert body["subtotal"] == "21.49"

    def test_inactive_product_is_404_and_creates_no_cart(self, api_client, session_id):
        # given
        product = ProductFactory(is_active=False)

        # when
        response = add_to_cart(api_client, session_id, product.id)

        # then
        assert_problem(response, 404)
        assert not Cart.objects.filter(session_id=session_id).exists()

    def test_unknown_product_is_404_and_creates_no_cart(self, api_client, session_id):
        # when
        response = add_to_cart(api_client, session_id, uuid.uuid4())

        # then
        assert_problem(response, 404)
        assert not Cart.objects.filter(session_id=session_id).exists()
        assert cache.get(f"cart:{session_id}") is None

    def test_more_than_the_stock_on_first_add_is_409_and_creates_no_cart(self, api_client, session_id):
        # given
        product = ProductFactory(inventory_quantity=3)

        # when
        response = add_to_cart(api_client, session_id, product.id, quantity=4)

        # then
        assert_problem(response, 409)
        assert not Cart.objects.filter(session_id=session_id).exists()

    def test_more_than_the_stock_in_total_is_409_and_leaves_the_cart_unchanged(
        self, api_client, session_id, product
    ):
        # given: 10 in stock, 4 already in the cart
        add_to_cart(api_client, session_id, product.id, quantity=4)

        # when
        response = add_to_cart(api_client, session_id, product.id, quantity=7)

        # then
        problem = assert_problem(response, 409)
        assert problem["products"] == [
            {"productId": str(product.id), "productSku": product.sku, "requested": 11, "available": 10}
        ]
        assert cart_item_quantities(session_id) == {str(product.id): 4}
        assert api_client.get(cart_url(session_id)).json()["items"][0]["quantity"] == 4

    def test_exactly_the_stock_is_accepted(self, api_client, session_id, product):
        # when
        response = add_to_cart(api_client, session_id, product.id, quantity=10)

        # then
        assert response.status_code == 200
        assert cart_item_quantities(session_id) == {str(product.id): 10}

    @pytest.mark.parametrize(
        "body,field",
        [
            ({"quantity": 0}, "quantity"),
            ({"quantity": -1}, "quantity"),
            ({"quantity": "many"}, "quantity"),
            ({}, "quantity"),
            ({"productId": None, "quantity": 1}, "productId"),
            ({"productId": "not-a-uuid", "quantity": 1}, "productId"),
        ],
    )
    def test_invalid_body_is_400_naming_the_field_and_creates_no_cart(
        self, api_client, session_id, product, body, field
    ):
        # given
        body = {"productId": str(product.id), **body}

        # when
        response = api_client.post(f"{cart_url(session_id)}/items", body, format="json")

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == [field]
        assert not Cart.objects.filter(session_id=session_id).exists()

    def test_missing_product_id_is_400_with_errors_and_creates_no_cart(self, api_client, session_id):
        # when
        response = api_client.post(f"{cart_url(session_id)}/items", {"quantity": 1}, format="json")

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == ["productId"]
        assert not Cart.objects.filter(session_id=session_id).exists()


class TestReadAndDeleteCart:
    def test_get_returns_the_cart(self, api_client, session_id, product):
        # given
        added = add_to_cart(api_client, session_id, product.id, quantity=2).json()

        # when
        response = api_client.get(cart_url(session_id))

        # then
        assert response.status_code == 200
        assert response.json() == added

    def test_unknown_cart_is_404_problem(self, api_client, session_id):
        # when
        response = api_client.get(cart_url(session_id))

        # then
        problem = assert_problem(response, 404)
        assert session_id in problem["detail"]

    def test_delete_is_204_and_the_cart_is_gone(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)
        api_client.get(cart_url(session_id))  # warm the cache

        # when
        response = api_client.delete(cart_url(session_id))

        # then
        assert response.status_code == 204
        assert response.content == b""
        assert not Cart.objects.filter(session_id=session_id).exists()
        assert not CartItem.objects.filter(cart__session_id=session_id).exists()
        assert cache.get(f"cart:{session_id}") is None
        assert_problem(api_client.get(cart_url(session_id)), 404)

    def test_delete_of_an_unknown_cart_is_404(self, api_client, session_id):
        # when
        response = api_client.delete(cart_url(session_id))

        # then
        assert_problem(response, 404)


class TestUpdateAndRemoveItem:
    def test_put_sets_the_quantity(self, api_client, session_id, product):
        # given
        item_id = add_to_cart(api_client, session_id, product.id, quantity=1).json()["items"][0]["id"]

        # when
        response = api_client.put(item_url(session_id, item_id), {"quantity": 3}, format="json")

        # then
        assert response.status_code == 200
        body = response.json()
        assert [(item["id"], item["quantity"], item["subtotal"]) for item in body["items"]] == [
            (item_id, 3, "59.97")
        ]
        assert body["subtotal"] == "59.97"
        assert cart_item_quantities(session_id) == {str(product.id): 3}

    def test_put_beyond_the_stock_is_409_and_leaves_the_item_unchanged(self, api_client, session_id, product):
        # given: 10 in stock
        item_id = add_to_cart(api_client, session_id, product.id, quantity=2).json()["items"][0]["id"]

        # when
        response = api_client.put(item_url(session_id, item_id), {"quantity": 11}, format="json")

        # then
        assert_problem(response, 409)
        assert cart_item_quantities(session_id) == {str(product.id): 2}
        assert api_client.get(cart_url(session_id)).json()["items"][0]["quantity"] == 2

    @pytest.mark.parametrize("body", [{"quantity": 0}, {}, {"quantity": "x"}])
    def test_put_with_an_invalid_quantity_is_400(self, api_client, session_id, product, body):
        # given
        item_id = add_to_cart(api_client, session_id, product.id, quantity=2).json()["items"][0]["id"]

        # when
        response = api_client.put(item_url(session_id, item_id), body, format="json")

        # then
        problem = assert_problem(response, 400)
        assert list(problem["errors"]) == ["quantity"]
        assert cart_item_quantities(session_id) == {str(product.id): 2}

    def test_delete_returns_the_cart_without_the_item(self, api_client, session_id):
        # given
        mug = ProductFactory(price=Decimal("19.99"))
        pen = ProductFactory(price=Decimal("0.50"))
        mug_item = add_to_cart(api_client, session_id, mug.id, quantity=1).json()["items"][0]["id"]
        add_to_cart(api_client, session_id, pen.id, quantity=2)

        # when
        response = api_client.delete(item_url(session_id, mug_item))

        # then
        assert response.status_code == 200
        body = response.json()
        assert [item["productId"] for item in body["items"]] == [str(pen.id)]
        assert body["subtotal"] == "1.00"
        assert not CartItem.objects.filter(id=mug_item).exists()

    def test_delete_of_the_last_item_keeps_an_empty_cart(self, api_client, session_id, product):
        # given
        item_id = add_to_cart(api_client, session_id, product.id).json()["items"][0]["id"]

        # when
        response = api_client.delete(item_url(session_id, item_id))

        # then
        assert response.status_code == 200
        assert response.json()["items"] == []
        assert response.json()["subtotal"] == "0.00"
        assert Cart.objects.filter(session_id=session_id).exists()

    def test_item_of_another_cart_is_404_for_put_and_delete_and_stays_untouched(self, api_client, product):
        # given: two carts, each with an item
        mine, theirs = f"mine-{uuid.uuid4().hex}", f"theirs-{uuid.uuid4().hex}"
        add_to_cart(api_client, mine, product.id, quantity=1)
        their_item = add_to_cart(api_client, theirs, product.id, quantity=2).json()["items"][0]["id"]

        # when
        put = api_client.put(item_url(mine, their_item), {"quantity": 5}, format="json")
        delete = api_client.delete(item_url(mine, their_item))

        # then
        assert_problem(put, 404)
        assert_problem(delete, 404)
        assert cart_item_quantities(theirs) == {str(product.id): 2}
        assert cart_item_quantities(mine) == {str(product.id): 1}

    def test_unknown_item_is_404_for_put_and_delete(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id, quantity=1)
        unknown = uuid.uuid4()

        # when
        put = api_client.put(item_url(session_id, unknown), {"quantity": 2}, format="json")
        delete = api_client.delete(item_url(session_id, unknown))

        # then
        assert_problem(put, 404)
        assert_problem(delete, 404)
        assert cart_item_quantities(session_id) == {str(product.id): 1}

    def test_item_of_an_unknown_cart_is_404(self, api_client, session_id):
        # when
        response = api_client.put(item_url(session_id, uuid.uuid4()), {"quantity": 2}, format="json")

        # then
        assert_problem(response, 404)
        assert not Cart.objects.filter(session_id=session_id).exists()


class TestSessionId:
    @pytest.mark.parametrize("bad", ["x" * 200, "has%20space", "semi%3Bcolon"])
    def test_invalid_session_id_is_400_everywhere_and_creates_nothing(self, api_client, product, bad):
        # when
        responses = [
            api_client.get(cart_url(bad)),
            add_to_cart(api_client, bad, product.id),
            api_client.delete(cart_url(bad)),
            api_client.put(item_url(bad, uuid.uuid4()), {"quantity": 1}, format="json"),
        ]

        # then
        for response in responses:
            assert_problem(response, 400)
        assert Cart.objects.count() == 0

    def test_longest_allowed_session_id_works(self, api_client, product):
        # given
        longest = "s" * 128

        # when
        response = add_to_cart(api_client, longest, product.id)

        # then
        assert response.status_code == 200
        assert response.json()["sessionId"] == longest

    def test_session_id_with_a_trailing_newline_is_400_and_creates_no_cart(self, api_client, product):
        # The validation regex ends in `$`, which also matches before a final
        # newline; "%0A" in the path must not slip through into a stored id.
        # when
        response = add_to_cart(api_client, "abc%0A", product.id)

        # then
        assert_problem(response, 400)
        assert Cart.objects.count() == 0


class TestExpiry:
    def test_expires_at_is_thirty_minutes_after_the_last_write(self, api_client, session_id, product):
        # given
        before = timezone.now()
        created = add_to_cart(api_client, session_id, product.id).json()
        after = timezone.now()
        assert before + IDLE_TTL <= parse_time(created["expiresAt"]) <= after + IDLE_TTL

        # when: a later write
        item_id = created["items"][0]["id"]
        updated = api_client.put(item_url(session_id, item_id), {"quantity": 2}, format="json").json()

        # then: the idle clock restarts from that write
        assert parse_time(updated["expiresAt"]) > parse_time(created["expiresAt"])
        idle = parse_time(updated["expiresAt"]) - parse_time(updated["updatedAt"])
        assert abs(idle - IDLE_TTL) < timedelta(seconds=1)
        cart = Cart.objects.get(session_id=session_id)
        assert cart.expires_at == parse_time(updated["expiresAt"])

    def expire(self, session_id: str) -> None:
        Cart.objects.filter(session_id=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))
        # The cached copy carries the old expiresAt; the clock would have passed
        # it as well, but moving only the row leaves it looking live.
        cache.delete(f"cart:{session_id}")

    def test_expired_cart_reads_as_404(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)
        self.expire(session_id)

        # when
        response = api_client.get(cart_url(session_id))

        # then
        assert_problem(response, 404)

    def test_cached_copy_of_an_expired_cart_is_not_served(self, api_client, session_id, product):
        # given: a cached copy whose own expiresAt has passed
        add_to_cart(api_client, session_id, product.id)
        document = api_client.get(cart_url(session_id)).json()
        past = (timezone.now() - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        cache.set(f"cart:{session_id}", {**document, "expiresAt": past})
        Cart.objects.filter(session_id=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))

        # when
        response = api_client.get(cart_url(session_id))

        # then
        assert_problem(response, 404)

    def test_expired_cart_refuses_item_updates_and_delete(self, api_client, session_id, product):
        # given
        item_id = add_to_cart(api_client, session_id, product.id).json()["items"][0]["id"]
        self.expire(session_id)

        # when
        put = api_client.put(item_url(session_id, item_id), {"quantity": 2}, format="json")
        delete = api_client.delete(cart_url(session_id))

        # then
        assert_problem(put, 404)
        assert_problem(delete, 404)
        assert cart_item_quantities(session_id) == {str(product.id): 1}

    def test_adding_to_an_expired_cart_starts_it_over_empty(self, api_client, session_id):
        # given
        stale = ProductFactory()
        fresh = ProductFactory()
        add_to_cart(api_client, session_id, stale.id, quantity=2)
        self.expire(session_id)

        # when
        response = add_to_cart(api_client, session_id, fresh.id, quantity=1)

        # then
        assert response.status_code == 200
        assert [item["productId"] for item in response.json()["items"]] == [str(fresh.id)]
        assert parse_time(response.json()["expiresAt"]) > timezone.now() + IDLE_TTL - timedelta(minutes=1)
        assert cart_item_quantities(session_id) == {str(fresh.id): 1}


class TestCache:
    def test_a_new_cart_drops_the_copy_a_deleted_cart_of_its_session_left_behind(self, api_client, session_id, product):
        # given: a deleted cart whose cached copy outlived it (its deletes failed)
        add_to_cart(api_client, session_id, product.id, quantity=5)
        stale = api_client.get(cart_url(session_id)).json()
        Cart.objects.filter(session_id=session_id).delete()
        cache.set(f"cart:{session_id}", stale)

        # when
        added = add_to_cart(api_client, session_id, product.id, quantity=1)

        # then
        assert added.status_code == 200, added.content
        assert added.json()["id"] != stale["id"]
        assert cache.get(f"cart:{session_id}") is None
        assert api_client.get(cart_url(session_id)).json() == added.json()

    def test_get_stores_the_cart_in_redis_and_serves_it_from_there(
        self, api_client, session_id, product, django_assert_num_queries
    ):
        # given
        add_to_cart(api_client, session_id, product.id, quantity=2)
        first = api_client.get(cart_url(session_id)).json()

        # when
        with django_assert_num_queries(0):
            second = api_client.get(cart_url(session_id))

        # then
        assert cache.get(f"cart:{session_id}") == first
        assert second.status_code == 200
        assert second.json() == first

    def test_add_after_a_cached_read_shows_the_new_quantity(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id, quantity=1)
        assert api_client.get(cart_url(session_id)).json()["items"][0]["quantity"] == 1
        assert cache.get(f"cart:{session_id}") is not None

        # when
        add_to_cart(api_client, session_id, product.id, quantity=2)

        # then
        body = api_client.get(cart_url(session_id)).json()
        assert body["items"][0]["quantity"] == 3
        assert cache.get(f"cart:{session_id}")["items"][0]["quantity"] == 3

    def test_put_after_a_cached_read_shows_the_new_quantity(self, api_client, session_id, product):
        # given
        item_id = add_to_cart(api_client, session_id, product.id, quantity=1).json()["items"][0]["id"]
        api_client.get(cart_url(session_id))

        # when
        response = api_client.put(item_url(session_id, item_id), {"quantity": 4}, format="json")

        # then
        assert response.json()["items"][0]["quantity"] == 4
        assert api_client.get(cart_url(session_id)).json()["items"][0]["quantity"] == 4

    def test_item_delete_after_a_cached_read_shows_the_item_gone(self, api_client, session_id, product):
        # given
        item_id = add_to_cart(api_client, session_id, product.id).json()["items"][0]["id"]
        api_client.get(cart_url(session_id))

        # when
        api_client.delete(item_url(session_id, item_id))

        # then
        assert api_client.get(cart_url(session_id)).json()["items"] == []

    def test_cart_is_served_from_postgresql_when_redis_is_empty(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id, quantity=2)
        cache.clear()

        # when
        response = api_client.get(cart_url(session_id))

        # then
        assert response.status_code == 200
        assert response.json()["items"][0]["quantity"] == 2
        assert cache.get(f"cart:{session_id}") == response.json()
