"""Assertions about the API's answers, shared by the API tests."""
PROBLEM = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail", "correlationId"}
CORRELATION_HEADER = "X-Correlation-ID"


def assert_problem(response, status: int) -> dict:
    """Assert the RFC 7807 shape SPEC.md promises for every error, and return the problem."""
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
