"""Order API views: lookup for anyone, list/cancel/fulfill for managers."""
import re
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ecommerce.auth import IsManager
from ecommerce.pagination import page_of
from ecommerce.api import parse
from ecommerce.problems import validation_error
from orders import selectors, services
from orders.serializers import OrderCancelInput, OrderFulfillInput, OrderListQuery, OrderOutput

_BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_bound(raw: str | None, field: str, *, end: bool) -> datetime | None:
    """Parse a filter bound: a bare date covers that whole day, a date-time is exact.

    Both bounds are inclusive; the value returned for `end` is exclusive.
    """
    if raw is None:
        return None
    try:
        day: date | None = parse_date(raw) if _BARE_DATE.fullmatch(raw) else None
        moment = None if day else parse_datetime(raw)
    except ValueError:  # well-formed but impossible, such as February 30
        day = moment = None
    if day is not None:
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        return start + timedelta(days=1) if end else start
    if moment is None:
        raise validation_error({field: ["Use an ISO-8601 date (2026-01-31) or date-time."]})
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment + timedelta(microseconds=1) if end else moment


class OrderListApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(parameters=[OrderListQuery], responses=OrderOutput(many=True))
    def get(self, request: Request) -> Response:
        query = parse(OrderListQuery, request.query_params)
        created_from = _date_bound(query.get("startDate"), "startDate", end=False)
        created_before = _date_bound(query.get("endDate"), "endDate", end=True)
        if created_from and created_before and created_from >= created_before:  # empty range
            raise validation_error({"endDate": ["endDate must not be before startDate."]})
        orders = selectors.order_list(
            status=query.get("status"),
            customer_email=query.get("customerEmail"),
            created_from=created_from,
            # A date-time end bound is inclusive like a date one.
            created_before=created_before,
        )
        return Response(
            page_of(orders, page=query["page"], size=query["size"], render=lambda rows: OrderOutput(rows, many=True).data)
        )


class OrderDetailApi(APIView):
    @extend_schema(responses=OrderOutput)
    def get(self, request: Request, order_number: str) -> Response:
        return Response(OrderOutput(selectors.order_get(order_number=order_number)).data)


def _order_response(order_number: str) -> Response:
    return Response(OrderOutput(selectors.order_get(order_number=order_number)).data)


class OrderCancelApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=OrderCancelInput, responses=OrderOutput)
    def post(self, request: Request, order_number: str) -> Response:
        data: dict[str, Any] = parse(OrderCancelInput, request.data)
        services.order_cancel(order_number=order_number, reason=data["reason"])
        return _order_response(order_number)


class OrderFulfillApi(APIView):
    permission_classes = [IsManager]

    @extend_schema(request=OrderFulfillInput, responses=OrderOutput)
    def post(self, request: Request, order_number: str) -> Response:
        data: dict[str, Any] = parse(OrderFulfillInput, request.data)
        services.order_fulfill(
            order_number=order_number,
            tracking_number=data["trackingNumber"],
            carrier=data["carrier"],
            notes=data["notes"],
        )
        return _order_response(order_number)
