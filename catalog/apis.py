"""Catalog API views: parse, call one service or selector, render."""
import uuid
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors, services
from catalog.selectors import query_timeout
from catalog.serializers import CategoryInput, CategoryOutput, ProductInput, ProductOutput, ProductQuery
from core.api import parse
from core.auth import ManagerOrReadOnly
from core.openapi import problem_responses
from core.pagination import page_of, page_output


class CategoryListApi(APIView):
    permission_classes = [ManagerOrReadOnly]

    @extend_schema(responses=CategoryOutput(many=True))
    def get(self, request: Request) -> Response:
        with query_timeout():
            categories = list(selectors.category_list())
        return Response(CategoryOutput(categories, many=True).data)

    @extend_schema(request=CategoryInput, responses={201: CategoryOutput, **problem_responses(409)})
    def post(self, request: Request) -> Response:
        data = parse(CategoryInput, request.data)
        category = services.category_create(name=data["name"], description=data["description"])
        return Response(CategoryOutput(category).data, status=status.HTTP_201_CREATED)


class CategoryDetailApi(APIView):
    permission_classes = [ManagerOrReadOnly]

    @extend_schema(responses=CategoryOutput)
    def get(self, request: Request, category_id: uuid.UUID) -> Response:
        with query_timeout():
            category = selectors.category_get(category_id=category_id)
        return Response(CategoryOutput(category).data)

    @extend_schema(request=CategoryInput, responses={200: CategoryOutput, **problem_responses(409)})
    def put(self, request: Request, category_id: uuid.UUID) -> Response:
        data = parse(CategoryInput, request.data)
        category = services.category_update(
            category_id=category_id, name=data["name"], description=data["description"]
        )
        return Response(CategoryOutput(category).data)

    @extend_schema(responses={204: None, **problem_responses(409)})
    def delete(self, request: Request, category_id: uuid.UUID) -> Response:
        services.category_delete(category_id=category_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Products ------------------------------------------------------------------


def _product_data(data: dict[str, Any]) -> services.ProductData:
    return services.ProductData(
        sku=data["sku"],
        name=data["name"],
        description=data["description"],
        price=data["price"],
        inventory_quantity=data["inventoryQuantity"],
        category_id=data["categoryId"],
        is_active=data["isActive"],
    )


class ProductListApi(APIView):
    permission_classes = [ManagerOrReadOnly]

    @extend_schema(operation_id="v1_products_list", parameters=[ProductQuery], responses=page_output(ProductOutput))
    def get(self, request: Request) -> Response:
        query = parse(ProductQuery, request.query_params)
        with query_timeout():
            page = page_of(
                selectors.product_list(category_id=query.get("categoryId"), is_active=query["isActive"]),
                page=query["page"],
                size=query["size"],
                render=lambda rows: ProductOutput(rows, many=True).data,
            )
        return Response(page)

    @extend_schema(request=ProductInput, responses={201: ProductOutput, **problem_responses(404, 409)})
    def post(self, request: Request) -> Response:
        data = parse(ProductInput, request.data)
        product = services.product_create(data=_product_data(data))
        return Response(ProductOutput(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(APIView):
    permission_classes = [ManagerOrReadOnly]

    @extend_schema(responses=ProductOutput)
    def get(self, request: Request, product_id: uuid.UUID) -> Response:
        with query_timeout():
            product = selectors.product_get(product_id=product_id)
        return Response(ProductOutput(product).data)

    @extend_schema(request=ProductInput, responses={200: ProductOutput, **problem_responses(409)})
    def put(self, request: Request, product_id: uuid.UUID) -> Response:
        data = parse(ProductInput, request.data)
        product = services.product_update(product_id=product_id, data=_product_data(data))
        return Response(ProductOutput(product).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, product_id: uuid.UUID) -> Response:
        services.product_deactivate(product_id=product_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Carts ---------------------------------------------------------------------
