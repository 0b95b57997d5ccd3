"""Talking to the API as a client does, and assertions about its answers, shared by the API tests."""
from typing import Any

from rest_framework.test import APIClient

API = "/api/v1"
PROBLEM = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "correlationId"}
CORRELATION_HEADER = "X-Correlation-ID"


def assert_problem(response, status: int) -> dict:
    """Assert the RFC 7807 shape docs/contract.md "Errors" promises for every error, and return the problem."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    problem = response.json()
    assert PROBLEM_FIELDS <= set(problem)
    assert problem["status"] == status
    assert isinstance(problem["type"], str) and problem["type"]
    assert isinstance(problem["title"], str) and problem["title"]
    assert isinstance(problem["detail"], str) and problem["detail"]
    assert problem["correlationId"] == response[CORRELATION_HEADER]
    assert "Traceback" not in response.content.decode()
    return problem


def login(client: APIClient, username: str, password: str) -> str:
    """Log in through the API and return the access token."""
    response = client.post(f"{API}/auth/login", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()["accessToken"]


def customer_info(**overrides: Any) -> dict[str, Any]:
    """Return a valid checkout `customerInfo`, with `overrides` applied."""
    info = {
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
    info.update(overrides)
    return info


def add_to_cart(client: APIClient, session_id: str, product_id: Any, quantity: int = 1):
    """Add `quantity` of a product to the session's cart through the API."""
    return client.post(
        f"{API}/carts/{session_id}/items", {"productId": str(product_id), "quantity": quantity}, format="json"
    )


def checkout(client: APIClient, session_id: str, key: str | None = None, **info_overrides: Any):
    """Check out the session's cart through the API, with an Idempotency-Key when `key` is given."""
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(
        f"{API}/checkout",
        {"sessionId": session_id, "customerInfo": customer_info(**info_overrides)},
        format="json",
        **headers,
    )
