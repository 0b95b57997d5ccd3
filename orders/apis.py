"""Order API views: lookup for anyone, list/cancel/fulfill for managers."""
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import parse
from core.auth import IsManager
from core.openapi import problem_responses
from core.pagination import page_of, page_output
from orders import selectors, services
from orders.serializers import OrderCancelInput, OrderFulfillInput, OrderListQuery, OrderOutput


class OrderListApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(operation_id="v1_orders_list", parameters=[OrderListQuery], responses=page_output(OrderOutput))
    def get(self, request: Request) -> Response:
        query = parse(OrderListQuery, request.query_params)
        orders = selectors.order_list(
            status=query.get("status"),
            customer_email=query.get("customerEmail"),
            created_from=query.get("startDate"),
            created_before=query.get("endDate"),
        )
        return Response(
            page_of(orders, page=query["page"], size=query["size"], render=lambda rows: OrderOutput(rows, many=True).data)
        )


def _order_response(order_number: str) -> Response:
    return Response(OrderOutput(selectors.order_get(order_number=order_number)).data)


class OrderDetailApi(APIView):
    @extend_schema(responses=OrderOutput)
    def get(self, request: Request, order_number: str) -> Response:
        return _order_response(order_number)


class OrderCancelApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=OrderCancelInput, responses={200: OrderOutput, **problem_responses(409)})
    def post(self, request: Request, order_number: str) -> Response:
        data: dict[str, Any] = parse(OrderCancelInput, request.data)
        services.order_cancel(order_number=order_number, reason=data["reason"])
        return _order_response(order_number)


class OrderFulfillApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=OrderFulfillInput, responses={200: OrderOutput, **problem_responses(409)})
    def post(self, request: Request, order_number: str) -> Response:
        data: dict[str, Any] = parse(OrderFulfillInput, request.data)
        services.order_fulfill(
            order_number=order_number,
            tracking_number=data["trackingNumber"],
            carrier=data["carrier"],
            notes=data["notes"],
        )
        return _order_response(order_number)
