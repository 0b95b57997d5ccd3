"""Categories and products per docs/contract.md "Endpoints": public reads, manager writes, paging, conflicts."""
import uuid

import pytest

from catalog.models import Category, Product
from tests.api import API, PROBLEM
from tests.factories import CategoryFactory, ProductFactory

pytestmark = pytest.mark.django_db


def product_body(category_id, **overrides):
    body = {
        "sku": "BOOK-001",
        "name": "A Book",
        "description": "Pages",
        "price": "19.99",
        "inventoryQuantity": 5,
        "categoryId": str(category_id),
    }
    body.update(overrides)
    return body


class TestCategories:
    def test_anyone_lists_categories(self, api_client):
        CategoryFactory(name="Books")
        response = api_client.get(f"{API}/categories")
        assert response.status_code == 200
        assert [c["name"] for c in response.json()] == ["Books"]
        assert set(response.json()[0]) == {"id", "name", "description", "createdAt", "updatedAt"}

    def test_manager_creates_category(self, manager_client):
        response = manager_client.post(f"{API}/categories", {"name": "Books", "description": "Paper"}, format="json")
        assert response.status_code == 201
        assert response.json()["name"] == "Books"
        assert Category.objects.filter(name="Books").count() == 1

    def test_duplicate_name_is_409_and_creates_nothing(self, manager_client):
        CategoryFactory(name="Books")
        response = manager_client.post(f"{API}/categories", {"name": "Books"}, format="json")
        assert response.status_code == 409
        assert response["Content-Type"] == PROBLEM
        assert Category.objects.filter(name="Books").count() == 1

    @pytest.mark.parametrize("body", [{"name": ""}, {"name": "x" * 101}, {"name": "ok", "description": "d" * 1001}, {}])
    def test_invalid_category_is_400_with_field_errors(self, manager_client, body):
        response = manager_client.post(f"{API}/categories", body, format="json")
        assert response.status_code == 400
        problem = response.json()
        assert problem["status"] == 400 and problem["errors"]
        assert Category.objects.count() == 0

    def test_anonymous_write_is_401(self, api_client):
        response = api_client.post(f"{API}/categories", {"name": "Books"}, format="json")
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
        assert Category.objects.count() == 0

    def test_non_manager_write_is_403(self, customer_client):
        response = customer_client.post(f"{API}/categories", {"name": "Books"}, format="json")
        assert response.status_code == 403
        assert Category.objects.count() == 0

    def test_invalid_token_is_401(self, api_client):
        api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
        response = api_client.post(f"{API}/categories", {"name": "Books"}, format="json")
        assert response.status_code == 401
        assert response.json()["status"] == 401

    def test_get_put_delete(self, manager_client, api_client):
        category = CategoryFactory(name="Old")
        url = f"{API}/categories/{category.id}"
        assert api_client.get(url).json()["name"] == "Old"
        response = manager_client.put(url, {"name": "New", "description": "d"}, format="json")
        assert response.status_code == 200 and response.json()["name"] == "New"
        assert manager_client.delete(url).status_code == 204
        assert not Category.objects.filter(id=category.id).exists()

    def test_put_to_taken_name_is_409(self, manager_client):
        CategoryFactory(name="Taken")
        category = CategoryFactory(name="Mine")
        response = manager_client.put(f"{API}/categories/{category.id}", {"name": "Taken"}, format="json")
        assert response.status_code == 409
        category.refresh_from_db()
        assert category.name == "Mine"

    def test_unknown_category_is_404(self, manager_client, api_client):
        url = f"{API}/categories/{uuid.uuid4()}"
        assert api_client.get(url).status_code == 404
        assert manager_client.put(url, {"name": "x"}, format="json").status_code == 404
        assert manager_client.delete(url).status_code == 404

    def test_delete_category_with_products_is_409(self, manager_client):
        product = ProductFactory()
        response = manager_client.delete(f"{API}/categories/{product.category_id}")
        assert response.status_code == 409
        assert Category.objects.filter(id=product.category_id).exists()


class TestProducts:
    def test_manager_creates_product(self, manager_client):
        category = CategoryFactory()
        response = manager_client.post(f"{API}/products", product_body(category.id), format="json")
        assert response.status_code == 201
        body = response.json()
        assert body["sku"] == "BOOK-001"
        assert body["price"] == "19.99"
        assert body["inventoryQuantity"] == 5
        assert body["isActive"] is True
        assert {"id", "createdAt", "updatedAt", "categoryId"} <= set(body)

    def test_duplicate_sku_is_409(self, manager_client):
        existing = ProductFactory(sku="BOOK-001")
        response = manager_client.post(f"{API}/products", product_body(existing.category_id), format="json")
        assert response.status_code == 409
        assert Product.objects.filter(sku="BOOK-001").count() == 1

    @pytest.mark.parametrize(
        "field,value",
        [
            ("sku", "lower-case"),
            ("sku", "A" * 51),
            ("name", ""),
            ("name", "n" * 201),
            ("price", "0.00"),
            ("price", "1.999"),
            ("price", "abc"),
            ("inventoryQuantity", -1),
            ("categoryId", "not-a-uuid"),
        ],
    )
    def test_invalid_product_is_400_naming_the_field(self, manager_client, field, value):
        category = CategoryFactory()
        response = manager_client.post(f"{API}/products", product_body(category.id, **{field: value}), format="json")
        assert response.status_code == 400
        assert field in response.json()["errors"]
        assert Product.objects.count() == 0

    def test_unknown_category_is_404(self, manager_client):
        response = manager_client.post(f"{API}/products", product_body(uuid.uuid4()), format="json")
        assert response.status_code == 404
        assert Product.objects.count() == 0

    def test_list_pages_and_filters(self, api_client):
        books = CategoryFactory()
        other = CategoryFactory()
        for index in range(25):
            ProductFactory(category=books, name=f"Book {index:02d}")
        ProductFactory(category=other)
        ProductFactory(category=books, is_active=False)

        first = api_client.get(f"{API}/products", {"categoryId": str(books.id)}).json()
        assert first["totalElements"] == 25
        assert first["totalPages"] == 2
        assert first["size"] == 20 and first["number"] == 0
        assert len(first["content"]) == 20

        second = api_client.get(f"{API}/products", {"categoryId": str(books.id), "page": 1, "size": 20}).json()
        assert len(second["content"]) == 5
        assert {p["id"] for p in first["content"]}.isdisjoint({p["id"] for p in second["content"]})

        inactive = api_client.get(f"{API}/products", {"isActive": "false"}).json()
        assert inactive["totalElements"] == 1

    @pytest.mark.parametrize("query", [{"size": 101}, {"size": 0}, {"page": -1}, {"categoryId": "nope"}, {"page": "x"}])
    def test_bad_paging_is_400(self, api_client, query):
        response = api_client.get(f"{API}/products", query)
        assert response.status_code == 400
        assert response["Content-Type"] == PROBLEM

    def test_soft_delete(self, manager_client, api_client):
        product = ProductFactory()
        assert manager_client.delete(f"{API}/products/{product.id}").status_code == 204
        product.refresh_from_db()
        assert product.is_active is False
        assert api_client.get(f"{API}/products").json()["totalElements"] == 0
        assert api_client.get(f"{API}/products/{product.id}").json()["isActive"] is False

    def test_put_updates(self, manager_client):
        product = ProductFactory()
        body = product_body(product.category_id, sku=product.sku, price="25.00", inventoryQuantity=7)
        response = manager_client.put(f"{API}/products/{product.id}", body, format="json")
        assert response.status_code == 200
        product.refresh_from_db()
        assert str(product.price) == "25.00" and product.inventory_quantity == 7

    def test_unknown_product_is_404(self, api_client, manager_client):
        url = f"{API}/products/{uuid.uuid4()}"
        assert api_client.get(url).status_code == 404
        assert manager_client.delete(url).status_code == 404


class TestLogin:
    def test_login_returns_bearer_token(self, api_client, django_user_model):
        django_user_model.objects.create_user("boss", password="s3cret-pass")
        response = api_client.post(f"{API}/auth/login", {"username": "boss", "password": "s3cret-pass"}, format="json")
        assert response.status_code == 200
        body = response.json()
        assert body["tokenType"] == "Bearer"
        assert body["expiresIn"] == 3600
        assert body["accessToken"].count(".") == 2

    def test_wrong_password_is_401(self, api_client, django_user_model):
        django_user_model.objects.create_user("boss", password="s3cret-pass")
        response = api_client.post(f"{API}/auth/login", {"username": "boss", "password": "wrong"}, format="json")
        assert response.status_code == 401
        assert response["Content-Type"] == PROBLEM
        assert "accessToken" not in response.json()
