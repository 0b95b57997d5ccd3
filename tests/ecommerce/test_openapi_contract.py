"""The OpenAPI schema is the contract: what it documents, and schemathesis holding the live API to it."""
import pytest
import schemathesis
import yaml
from django.core.management import call_command
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework_simplejwt.tokens import AccessToken
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import ProductFactory, UserFactory

PROBLEM = "application/problem+json"
PROBLEM_REF = "#/components/schemas/ProblemOutput"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def openapi(django_db_blocker, tmp_path_factory) -> dict:
    """The schema as /api/schema serves it."""
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operations(openapi: dict):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


class TestSchemaDocuments:
    def test_every_operation_documents_its_errors_as_problems(self, openapi):
        for method, path, operation in operations(openapi):
            errors = {code: response for code, response in operation["responses"].items() if code >= "400"}
            assert "400" in errors or method in ("GET", "DELETE"), (method, path)
            assert "503" in errors, (method, path)
            for code, response in errors.items():
                assert response["content"] == {PROBLEM: {"schema": {"$ref": PROBLEM_REF}}}, (method, path, code)

    def test_the_problem_schema_has_the_rfc_7807_fields(self, openapi):
        problem = openapi["components"]["schemas"]["ProblemOutput"]
        assert {"type", "title", "status", "detail", "correlationId"} <= set(problem["required"])

    @pytest.mark.parametrize(
        ("path", "page"), [("/api/v1/products", "ProductPage"), ("/api/v1/orders", "OrderPage")]
    )
    def test_lists_are_documented_as_page_objects(self, openapi, path, page):
        ok = openapi["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{page}"}
        properties = openapi["components"]["schemas"][page]["properties"]
        assert set(properties) == {"content", "totalElements", "totalPages", "size", "number"}
        assert properties["content"]["type"] == "array"

    def test_removing_a_cart_item_answers_200_with_the_cart(self, openapi):
        responses = openapi["paths"]["/api/v1/carts/{session_id}/items/{item_id}"]["delete"]["responses"]
        assert "204" not in responses
        ok = responses["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/CartOutput"}

    def test_adding_to_a_cart_answers_200(self, openapi):
        responses = openapi["paths"]["/api/v1/carts/{session_id}/items"]["post"]["responses"]
        assert "200" in responses and "201" not in responses

    @pytest.mark.parametrize(
        ("method", "path", "public"),
        [
            ("get", "/api/v1/categories", True),
            ("get", "/api/v1/products/{product_id}", True),
            ("post", "/api/v1/checkout", True),
            ("post", "/api/v1/auth/login", True),
            ("post", "/api/v1/categories", False),
            ("get", "/api/v1/orders", False),
            ("post", "/api/v1/orders/{order_number}/cancel", False),
        ],
    )
    def test_auth_is_documented_per_operation(self, openapi, method, path, public):
        operation = openapi["paths"][path][method]
        if public:
            assert not operation.get("security"), operation.get("security")
            assert "403" not in operation["responses"]
        else:
            assert operation["security"] == [{"jwtAuth": []}]
            assert {"401", "403"} <= set(operation["responses"])

    def test_throttled_operations_document_429_with_retry_after(self, openapi):
        for path in ("/api/v1/auth/login", "/api/v1/checkout"):
            too_many = openapi["paths"][path]["post"]["responses"]["429"]
            assert "Retry-After" in too_many["headers"]


# --- schemathesis against a live server ------------------------------------------

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and generation mode: enough to find what the probe found, and
# the whole run stays well under a minute on a shared 2-core machine.
EXAMPLES = 12


def test_the_live_api_conforms_to_its_schema(live_server, transactional_db):
    """Run schemathesis over every operation: positive and negative data, zero failures.

    Driven through schemathesis's strategies and Hypothesis directly: its lazy
    pytest integration reads a pytest attribute that pytest 9 no longer has.
    """
    # given a catalog to find, and a manager token on every call so that manager
    # operations are exercised, not only their 401
    ProductFactory.create_batch(3)
    token = str(AccessToken.for_user(UserFactory(manager=True)))
    api = schemathesis.openapi.from_url(f"{live_server.url}/api/schema?format=json")
    failures: dict[str, str] = {}
    calls = 0

    # when every operation is called with generated requests
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )
            def call(case) -> None:
                nonlocal calls
                calls += 1
                case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

            try:
                call()
            except Unsatisfiable:
                # Nothing in the operation's inputs can be made invalid (a free
                # string path parameter, no query): no negative case exists.
                assert mode == GenerationMode.NEGATIVE, operation.label
            except Exception as failure:  # schemathesis's FailureGroup, or the check's own error
                failures[f"{operation.label} ({mode})"] = str(failure)[:2000]

    # then nothing failed, and the run really called the API
    assert not failures, "\n\n".join(f"{label}: {failure}" for label, failure in failures.items())
    assert calls >= 21 * 2
