"""With DEBUG on (the local settings' default, as under runserver), /api/ still answers problem+json, never Django's debug pages.

Django picks its technical 404/500 pages per request from `settings.DEBUG`, so
the `settings` fixture turning it on is runserver's situation.
"""
import pytest

from catalog.models import Category
from tests.api import API, assert_problem

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def debug_on(settings):
    settings.DEBUG = True


class TestApiWithDebugOn:
    @pytest.mark.parametrize(
        "path",
        [
            f"{API}/nope",
            f"{API}/categories/not-a-uuid",
            f"{API}/products/123",
            f"{API}/carts/s1/items/not-a-uuid",
            f"{API}/",
            "/api/nothing-here",
        ],
    )
    def test_unknown_api_path_is_404_problem_without_the_url_list(self, api_client, path):
        # when
        response = api_client.get(path)

        # then
        problem = assert_problem(response, 404)
        body = response.content.decode()
        assert "api/v1/" not in problem["detail"].replace(path, "")  # names the path asked for, nothing else
        assert "URLconf" not in body and "<html" not in body.lower()

    def test_wrong_method_is_405_problem(self, manager_client):
        # when
        response = manager_client.patch(f"{API}/categories", {"name": "Books"}, format="json")

        # then
        assert_problem(response, 405)
        assert Category.objects.count() == 0

    def test_wrong_method_on_the_api_docs_is_405_problem(self, api_client):
        # when
        response = api_client.post("/api/docs")

        # then
        problem = assert_problem(response, 405)
        assert "POST" in problem["detail"]


class TestNonApiPagesKeepDjangoDebugPages:
    def test_unknown_non_api_path_shows_the_debug_page_in_development(self, client):
        # when
        response = client.get("/nope")

        # then Django's technical 404, as a developer expects
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")
        assert b"URLconf" in response.content
