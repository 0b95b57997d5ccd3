"""Cross-cutting API behaviour per docs/contract.md: problem+json errors, correlation ids, outages, health, docs, metrics."""
import io
import json
import logging
import socket
import uuid

import pytest
import yaml
from django.db import connections

from catalog.models import Category
from checkout.models import Cart
from core.correlation import CorrelationIdLogFilter
from orders.models import Order
from outbox.models import OutboxEvent
from tests.api import API, PROBLEM, add_to_cart, assert_problem, checkout, customer_info
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

HEADER = "X-Correlation-ID"


def closed_port() -> int:
    """A local port nothing listens on: bound once to pick it, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class TestProblemDetails:
    @pytest.mark.parametrize("path", [f"{API}/nope", "/nope", f"{API}/categories/not-a-uuid", f"{API}/"])
    def test_unknown_url_is_404_problem(self, api_client, path):
        # when
        response = api_client.get(path)

        # then
        problem = assert_problem(response, 404)
        assert problem["title"] == "Not Found"

    def test_wrong_method_is_405_problem(self, manager_client):
        # Authorised, so the 405 is not masked by a 401 (DRF checks permissions first).
        # when
        response = manager_client.patch(f"{API}/categories", {"name": "Books"}, format="json")

        # then
        problem = assert_problem(response, 405)
        assert problem["title"] == "Method Not Allowed"
        assert Category.objects.count() == 0

    def test_wrong_method_on_a_public_endpoint_is_405_problem(self, api_client, session_id):
        # when
        response = api_client.patch(f"{API}/carts/{session_id}", {}, format="json")

        # then
        assert_problem(response, 405)
        assert not Cart.objects.filter(session_id=session_id).exists()

    def test_unsupported_media_type_is_415_problem_and_creates_nothing(self, manager_client):
        # when
        response = manager_client.post(f"{API}/categories", "name=Books", content_type="text/plain")

        # then
        problem = assert_problem(response, 415)
        assert problem["title"] == "Unsupported Media Type"
        assert Category.objects.count() == 0

    def test_malformed_json_is_400_problem_and_creates_nothing(self, manager_client):
        # when
        response = manager_client.post(f"{API}/categories", '{"name": ', content_type="application/json")

        # then
        problem = assert_problem(response, 400)
        assert problem["title"] == "Bad Request"
        assert Category.objects.count() == 0

    def test_malformed_json_to_a_public_endpoint_is_400_problem(self, api_client, session_id):
        # when
        response = api_client.post(f"{API}/carts/{session_id}/items", "{", content_type="application/json")

        # then
        assert_problem(response, 400)
        assert not Cart.objects.filter(session_id=session_id).exists()

    def test_validation_error_is_400_problem_with_field_errors(self, manager_client):
        # when
        response = manager_client.post(f"{API}/categories", {"name": ""}, format="json")

        # then
        problem = assert_problem(response, 400)
        assert set(problem["errors"]) == {"name"}
        assert all(isinstance(message, str) for message in problem["errors"]["name"])
        assert Category.objects.count() == 0

    def test_nested_validation_errors_name_the_field_path(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)
        info = customer_info(phone="12", shippingAddress={"city": "London"})

        # when
        response = api_client.post(
            f"{API}/checkout",
            {"sessionId": session_id, "customerInfo": info},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )

        # then
        problem = assert_problem(response, 400)
        assert "customerInfo.phone" in problem["errors"]
        assert "customerInfo.shippingAddress.street" in problem["errors"]
        assert Order.objects.count() == 0
        assert OutboxEvent.objects.count() == 0

    def test_unacceptable_accept_header_is_406_problem(self, api_client):
        # when
        response = api_client.get(f"{API}/categories", HTTP_ACCEPT="application/xml")

        # then
        assert_problem(response, 406)

    def test_error_asked_for_as_html_is_still_a_json_problem(self, api_client):
        # A browser sends Accept: text/html; the body must match the problem+json
        # content type instead of being the browsable API's HTML page.
        # when
        response = api_client.get(f"{API}/carts/no-such-cart", HTTP_ACCEPT="text/html")

        # then
        assert response.status_code == 404
        assert response["Content-Type"] == PROBLEM
        assert "<html" not in response.content.decode(), "an HTML page labelled problem+json"
        assert response.json()["status"] == 404

    def test_unauthenticated_is_401_problem(self, api_client):
        # when
        response = api_client.get(f"{API}/orders")

        # then
        assert_problem(response, 401)


class TestCorrelationId:
    def test_given_id_is_echoed_on_success(self, api_client):
        # when
        response = api_client.get(f"{API}/categories", HTTP_X_CORRELATION_ID="req-1234.abc:5")

        # then
        assert response.status_code == 200
        assert response[HEADER] == "req-1234.abc:5"

    def test_given_id_is_echoed_in_the_header_and_the_problem_body(self, api_client):
        # when
        response = api_client.get(f"{API}/nope", HTTP_X_CORRELATION_ID="trace-42")

        # then
        problem = assert_problem(response, 404)
        assert response[HEADER] == "trace-42"
        assert problem["correlationId"] == "trace-42"

    def test_given_id_reaches_a_problem_raised_inside_a_view(self, api_client):
        # when
        response = api_client.get(f"{API}/carts/no-such-cart", HTTP_X_CORRELATION_ID="trace-43")

        # then
        assert assert_problem(response, 404)["correlationId"] == "trace-43"

    def test_absent_id_is_generated_and_echoed(self, api_client):
        # when
        first = api_client.get(f"{API}/nope")
        second = api_client.get(f"{API}/nope")

        # then
        assert is_uuid(first[HEADER])
        assert first.json()["correlationId"] == first[HEADER]
        assert first[HEADER] != second[HEADER]

    @pytest.mark.parametrize("bad", ["has spaces", "x" * 300, "semi;colon", "<script>", ""])
    def test_invalid_id_is_replaced_by_a_generated_one(self, api_client, bad):
        # when
        response = api_client.get(f"{API}/nope", HTTP_X_CORRELATION_ID=bad)

        # then
        assert is_uuid(response[HEADER])
        assert response.json()["correlationId"] == response[HEADER]

    def test_longest_valid_id_is_kept(self, api_client):
        # given
        longest = "a" * 128

        # when
        response = api_client.get(f"{API}/categories", HTTP_X_CORRELATION_ID=longest)

        # then
        assert response[HEADER] == longest

    def test_every_log_line_of_a_request_carries_its_id(self, api_client):
        # given: the console handler of settings.LOGGING, writing into a buffer
        handler = next(
            handler
            for handler in logging.getLogger().handlers
            if any(isinstance(log_filter, CorrelationIdLogFilter) for log_filter in handler.filters)
        )
        buffer = io.StringIO()
        original_stream = handler.setStream(buffer)
        try:
            # when: a request that logs (Django logs every 4xx/5xx response)
            response = api_client.get(f"{API}/carts/no-such-cart", HTTP_X_CORRELATION_ID="log-trace-1")
        finally:
            handler.setStream(original_stream)

        # then
        assert response.status_code == 404
        lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
        assert lines, "the request logged nothing"
        assert [(line["logger"], line["correlation_id"]) for line in lines] == [
            (line["logger"], "log-trace-1") for line in lines
        ]

    def test_checkout_carries_the_id_into_the_order_and_its_outbox_event(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)

        # when
        response = api_client.post(
            f"{API}/checkout",
            {"sessionId": session_id, "customerInfo": customer_info()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            HTTP_X_CORRELATION_ID="checkout-trace-7",
        )

        # then
        assert response.status_code == 201, response.content
        assert response[HEADER] == "checkout-trace-7"
        order = Order.objects.get(order_number=response.json()["orderNumber"])
        assert order.correlation_id == "checkout-trace-7"
        event = OutboxEvent.objects.get(aggregate_id=str(order.id), event_type="ORDER_CREATED")
        assert event.payload["correlationId"] == "checkout-trace-7"
        assert event.headers["correlation_id"] == "checkout-trace-7"
        assert event.headers["event_id"] == event.payload["eventId"] == str(event.event_id)

    def test_checkout_without_an_id_carries_the_generated_one(self, api_client, session_id, product):
        # given
        add_to_cart(api_client, session_id, product.id)

        # when
        response = api_client.post(
            f"{API}/checkout",
            {"sessionId": session_id, "customerInfo": customer_info()},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )

        # then
        assert response.status_code == 201, response.content
        generated = response[HEADER]
        assert is_uuid(generated)
        event = OutboxEvent.objects.get(event_type="ORDER_CREATED")
        assert event.payload["correlationId"] == generated
        assert event.headers["correlation_id"] == generated


@pytest.mark.django_db(transaction=True)
class TestDatabaseOutage:
    """Point the request's connection at a port nothing listens on: a real refused connect."""

    @pytest.fixture
    def database_down(self):
        """Cut the database off for the test; yield the real port so a test can restore it early."""
        connection = connections["default"]
        connection.close()
        port = connection.settings_dict["PORT"]
        connection.settings_dict["PORT"] = closed_port()
        try:
            yield port
        finally:
            connection.settings_dict["PORT"] = port
            connection.close()

    @pytest.mark.parametrize(
        "path",
        [f"{API}/categories", f"{API}/products", f"{API}/carts/some-session", f"{API}/orders/ORD-20260101-000001"],
    )
    def test_read_is_503_problem_without_a_stack_trace(self, api_client, database_down, path):
        # when
        response = api_client.get(path, HTTP_X_CORRELATION_ID="outage-1")

        # then
        problem = assert_problem(response, 503)
        assert problem["correlationId"] == "outage-1"
        assert "OperationalError" not in response.content.decode()
        assert "psycopg" not in response.content.decode()

    @pytest.mark.parametrize(
        "path,body",
        [
            (f"{API}/carts/some-session/items", {"productId": str(uuid.uuid4()), "quantity": 1}),
            (f"{API}/auth/login", {"username": "manager", "password": "manager123"}),
        ],
    )
    def test_write_is_503_problem(self, api_client, database_down, path, body):
        # when
        response = api_client.post(path, body, format="json")

        # then
        assert_problem(response, 503)

    def test_outage_outside_the_api_views_is_503_problem(self, client, database_down):
        # The admin is plain Django, not DRF: the middleware answers for it.
        # when
        response = client.post("/admin/login/", {"username": "manager", "password": "manager123"})

        # then
        assert_problem(response, 503)

    @pytest.mark.kafka  # readiness asks every dependency, the broker too
    def test_readiness_names_the_database(self, api_client, database_down):
        # when
        response = api_client.get("/health/ready")

        # then
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "DOWN"
        assert body["down"] == ["database"]
        assert body["components"]["database"]["status"] == "DOWN"
        assert body["components"]["redis"] == {"status": "UP"}

    def test_service_answers_again_once_the_database_is_back(self, api_client, database_down):
        # given: an outage response
        real_port = database_down
        assert api_client.get(f"{API}/categories").status_code == 503
        connection = connections["default"]

        # when: the database is reachable again
        connection.close()
        connection.settings_dict["PORT"] = real_port
        response = api_client.get(f"{API}/categories")

        # then
        assert response.status_code == 200
        assert response.json() == []


class TestHealth:
    def test_live(self, api_client):
        response = api_client.get("/health/live")
        assert response.status_code == 200
        assert response.json() == {"status": "UP"}

    @pytest.mark.kafka
    def test_ready_checks_every_dependency(self, api_client):
        # when
        response = api_client.get("/health/ready")

        # then
        assert response.status_code == 200, response.content
        assert response.json() == {
            "status": "UP",
            "components": {"database": {"status": "UP"}, "redis": {"status": "UP"}, "kafka": {"status": "UP"}},
        }

    @pytest.mark.kafka  # only Redis may be named: the broker must be up
    def test_ready_is_200_degraded_naming_redis_when_it_is_down(self, api_client, settings):
        # given
        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/15"

        # when
        response = api_client.get("/health/ready")

        # then: checkout works without Redis, so the web tier stays in service
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "DEGRADED"
        assert body["degraded"] == ["redis"]
        assert "redis" in body["detail"]
        assert body["components"]["redis"]["status"] == "DOWN"
        assert body["components"]["database"] == {"status": "UP"}
        assert body["components"]["kafka"] == {"status": "UP"}

    def test_ready_is_200_degraded_naming_every_optional_dependency_that_is_down(self, api_client, settings):
        # given
        settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/15"
        settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{closed_port()}"]

        # when
        response = api_client.get("/health/ready")

        # then
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["status"], body["degraded"]) == ("DEGRADED", ["redis", "kafka"])
        assert {name: component["status"] for name, component in body["components"].items()} == {
            "database": "UP", "redis": "DOWN", "kafka": "DOWN",
        }  # fmt: skip

    def test_a_stopped_broker_leaves_the_web_tier_ready_degraded_while_checkout_answers_201(
        self, api_client, broker, session_id
    ):
        # given: a cart, then the broker process killed
        product = ProductFactory(inventory_quantity=5)
        assert add_to_cart(api_client, session_id, product.id, 1).status_code == 200
        broker.kill()

        # when
        ready = api_client.get("/health/ready")
        response = checkout(api_client, session_id, str(uuid.uuid4()))

        # then: ready (degraded, naming Kafka), and the checkout is taken, its event waiting in the outbox
        assert ready.status_code == 200, ready.content
        body = ready.json()
        assert (body["status"], body["degraded"]) == ("DEGRADED", ["kafka"])
        assert "kafka" in body["detail"]
        assert body["components"]["kafka"]["status"] == "DOWN"
        assert body["components"]["database"] == {"status": "UP"}
        assert body["components"]["redis"] == {"status": "UP"}
        assert response.status_code == 201, response.content
        order = Order.objects.get(order_number=response.json()["orderNumber"])
        assert OutboxEvent.objects.get(aggregate_id=str(order.id)).status == "PENDING"


class TestDocsAndMetrics:
    def test_openapi_schema_documents_the_api(self, api_client):
        # when
        response = api_client.get("/api/schema")

        # then
        assert response.status_code == 200
        document = yaml.safe_load(response.content)
        assert document["openapi"].startswith("3.")
        assert "/api/v1/checkout" in document["paths"]
        assert {"/api/v1/carts/{session_id}/items", "/api/v1/orders/{order_number}/cancel"} <= set(document["paths"])

    def test_browsable_docs(self, api_client):
        response = api_client.get("/api/docs")
        assert response.status_code == 200
        assert b"swagger" in response.content.lower()

    def test_prometheus_metrics(self, api_client):
        # given: at least one request through the middleware
        api_client.get("/health/live")

        # when
        response = api_client.get("/metrics")

        # then
        assert response.status_code == 200
        assert "django_http_requests" in response.content.decode()
