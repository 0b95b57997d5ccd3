"""Hostile input is answered 4xx problem+json, never 500 (issue: the API is hard to break).

One test per input the probe found crashing the API, plus the limits around it.
"""
import json
import uuid

import pytest
from django.conf import settings

from checkout.idempotency import request_fingerprint
from checkout.models import IdempotencyRecord
from core.errors import InvalidRequest
from orders.models import Order
from outbox.models import OutboxEvent
from tests.api import API, add_to_cart, assert_problem, customer_info

pytestmark = pytest.mark.django_db


def post_raw(client, path: str, body: str | bytes, **headers):
    return client.generic("POST", path, body, content_type="application/json", **headers)


class TestNestingDepth:
    def test_json_nested_a_thousand_deep_is_400(self, api_client):
        # given the probe's body: a list nested 1,000 deep (RecursionError before)
        body = "[" * 1000 + "]" * 1000

        # when
        response = post_raw(api_client, f"{API}/auth/login", body)

        # then
        problem = assert_problem(response, 400)
        assert "nested" in problem["detail"]

    def test_json_just_past_the_depth_limit_is_400_and_at_it_is_parsed(self, api_client, settings):
        # given a limit, and bodies one level inside and one level past it
        settings.API_JSON_MAX_DEPTH = 5
        at_limit = {"username": "x", "password": "y", "extra": [[[["deep"]]]]}  # 5 levels
        past_limit = {"username": "x", "password": "y", "extra": [[[[["deep"]]]]]}  # 6 levels

        # when
        accepted = post_raw(api_client, f"{API}/auth/login", json.dumps(at_limit))
        refused = post_raw(api_client, f"{API}/auth/login", json.dumps(past_limit))

        # then the first reached the view (wrong credentials), the second did not
        assert_problem(accepted, 401)
        assert "deeper than 5" in assert_problem(refused, 400)["detail"]

    def test_deep_checkout_body_creates_nothing(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)
        body = '{"sessionId": "%s", "customerInfo": %s}' % (session_id, "[" * 1000 + "]" * 1000)

        # when
        response = post_raw(api_client, f"{API}/checkout", body, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))

        # then
        assert_problem(response, 400)
        assert Order.objects.count() == 0
        assert IdempotencyRecord.objects.count() == 0


class TestBodySize:
    def test_body_over_the_limit_is_413(self, api_client):
        # given a body one byte over Django's upload limit
        padding = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = json.dumps({"username": "manager", "password": padding})

        # when
        response = post_raw(api_client, f"{API}/auth/login", body)

        # then
        problem = assert_problem(response, 413)
        assert problem["title"] == "Payload Too Large"

    def test_oversized_checkout_is_413_and_creates_nothing(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)
        body = json.dumps(
            {"sessionId": session_id, "customerInfo": customer_info(name="x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}
        )

        # when
        response = post_raw(api_client, f"{API}/checkout", body, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))

        # then
        assert_problem(response, 413)
        assert Order.objects.count() == 0
        assert IdempotencyRecord.objects.count() == 0

    def test_oversized_body_outside_a_drf_view_is_413(self, client):
        # given a plain Django view whose middleware reads the form body (the admin login)
        body = "username=" + "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

        # when
        response = client.generic("POST", "/admin/login/", body, content_type="application/x-www-form-urlencoded")

        # then
        assert_problem(response, 413)


class TestUndecodableText:
    @pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\u0000"])
    def test_lone_surrogate_or_nul_in_a_checkout_is_400_and_creates_nothing(
        self, api_client, session_id, product, escape
    ):
        # given the probe's body: valid JSON whose string decodes to a lone surrogate (or a NUL)
        add_to_cart(api_client, session_id, product.id)
        info = json.dumps(customer_info(name="PLACEHOLDER")).replace("PLACEHOLDER", escape)
        body = '{"sessionId": "%s", "customerInfo": %s}' % (session_id, info)

        # when
        response = post_raw(api_client, f"{API}/checkout", body, HTTP_IDEMPOTENCY_KEY="k1")

        # then
        problem = assert_problem(response, 400)
        assert "Unicode" in problem["detail"]
        assert Order.objects.count() == 0
        assert OutboxEvent.objects.count() == 0
        assert IdempotencyRecord.objects.count() == 0

    def test_lone_surrogate_in_a_key_is_400(self, api_client):
        # when
        response = post_raw(api_client, f"{API}/auth/login", '{"username": "a", "password": "b", "\\ud800": 1}')

        # then
        assert_problem(response, 400)

    def test_invalid_utf8_is_400(self, api_client):
        # when
        response = post_raw(api_client, f"{API}/auth/login", b'{"username": "\xff\xfe", "password": "x"}')

        # then
        assert_problem(response, 400)

    def test_the_fingerprint_refuses_a_body_it_cannot_encode(self):
        # when / then: validated before hashing, a client error rather than a crash
        with pytest.raises(InvalidRequest):
            request_fingerprint(method="POST", path="/api/v1/checkout", body={"name": "\ud800"})


class TestOutOfRangeDates:
    @pytest.mark.parametrize(
        "query",
        [
            "endDate=9999-12-31",
            "endDate=9999-12-31T23:59:59.999999",
            "startDate=9999-12-31T23:00:00-05:00",
            "startDate=0001-01-01T00:00:00%2B01:00",
            "startDate=2026-01-01&endDate=" + "9" * 100,
        ],
    )
    def test_out_of_range_date_is_400_naming_the_field(self, manager_client, query):
        # when
        response = manager_client.get(f"{API}/orders?{query}")

        # then
        problem = assert_problem(response, 400)
        field = query.rsplit("&", 1)[-1].split("=")[0]
        assert set(problem["errors"]) == {field}

    def test_the_last_representable_start_day_still_works(self, manager_client):
        # when
        response = manager_client.get(f"{API}/orders?startDate=9999-12-30")

        # then
        assert response.status_code == 200
        assert response.json()["totalElements"] == 0

    def test_a_page_past_any_offset_postgresql_can_take_is_400(self, manager_client, api_client):
        # when
        orders = manager_client.get(f"{API}/orders?page=999999999999999999")
        products = api_client.get(f"{API}/products?page=999999999999999999")

        # then
        assert_problem(orders, 400)
        assert_problem(products, 400)

    def test_an_order_number_postgresql_cannot_store_is_404(self, api_client):
        # when: a NUL in the path (PostgreSQL refuses NUL in text)
        response = api_client.get(f"{API}/orders/ORD%00-1")

        # then
        assert_problem(response, 404)


class TestIdempotencyKeyText:
    @pytest.mark.parametrize("key", ["k\x00", "k\x01", "clé", "k\u2028"])
    def test_a_key_that_is_not_printable_ascii_is_400_and_creates_nothing(self, api_client, session_id, product, key):
        # given
        add_to_cart(api_client, session_id, product.id)

        # when
        response = api_client.post(
            f"{API}/checkout",
            {"sessionId": session_id, "customerInfo": customer_info()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

        # then
        assert assert_problem(response, 400)["type"].endswith("idempotency-key-invalid")
        assert Order.objects.count() == 0
        assert IdempotencyRecord.objects.count() == 0
