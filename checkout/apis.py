"""Customer API views: parse, call one service or selector, render."""
import re
import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from checkout import selectors, services
from checkout.idempotency import HEADER as IDEMPOTENCY_HEADER
from checkout.idempotency import idempotency_key_validate, idempotent_execute
from checkout.metrics import CHECKOUTS
from checkout.serializers import (
    SESSION_ID_MAX_LENGTH,
    CartItemAddInput,
    CartItemUpdateInput,
    CartOutput,
    CheckoutInput,
    CheckoutOutput,
)
from core.api import parse
from core.correlation import get_correlation_id
from core.errors import InvalidRequest
from core.openapi import problem_responses
from core.problems import PROBLEM_CONTENT_TYPE, domain_error_body
from core.throttles import CheckoutClientThrottle
from orders.services import CustomerInfo, ShippingAddress

_SESSION_ID = re.compile(rf"^[A-Za-z0-9._~-]{{1,{SESSION_ID_MAX_LENGTH}}}$")



def session_id_valid(session_id: str) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        raise InvalidRequest(
            f"sessionId must be 1-{SESSION_ID_MAX_LENGTH} characters of A-Z, a-z, 0-9, '.', '_', '~', '-'.",
            problem_type="invalid-session-id",
        )
    return session_id


# Categories ----------------------------------------------------------------


def _cart_written(state: services.CartState) -> Response:
    # The cart as the write left it, read under its lock: no second read, and
    # nothing from the cache the write has just made stale.
    return Response(selectors.cart_document(state.cart, state.items))


class CartApi(APIView):
    @extend_schema(responses=CartOutput)
    def get(self, request: Request, session_id: str) -> Response:
        return Response(selectors.cart_detail(session_id=session_id_valid(session_id)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, session_id: str) -> Response:
        services.cart_delete(session_id=session_id_valid(session_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CartItemAddApi(APIView):
    @extend_schema(request=CartItemAddInput, responses={200: CartOutput, **problem_responses(404, 409)})
    def post(self, request: Request, session_id: str) -> Response:
        session_id = session_id_valid(session_id)
        data = parse(CartItemAddInput, request.data)
        return _cart_written(
            services.cart_item_add(session_id=session_id, product_id=data["productId"], quantity=data["quantity"])
        )


class CartItemApi(APIView):
    @extend_schema(request=CartItemUpdateInput, responses={200: CartOutput, **problem_responses(409)})
    def put(self, request: Request, session_id: str, item_id: uuid.UUID) -> Response:
        session_id = session_id_valid(session_id)
        data = parse(CartItemUpdateInput, request.data)
        return _cart_written(services.cart_item_update(session_id=session_id, item_id=item_id, quantity=data["quantity"]))

    # docs/contract.md "Endpoints": removing an item answers 200 with the cart, not 204.
    @extend_schema(responses={200: CartOutput})
    def delete(self, request: Request, session_id: str, item_id: uuid.UUID) -> Response:
        session_id = session_id_valid(session_id)
        return _cart_written(services.cart_item_remove(session_id=session_id, item_id=item_id))


# Checkout ------------------------------------------------------------------

CHECKOUT_MESSAGE = "Order received; payment is being processed."


def _customer(data: dict[str, Any]) -> CustomerInfo:
    address = data["shippingAddress"]
    return CustomerInfo(
        name=data["name"],
        email=data["email"],
        phone=data["phone"],
        shipping_address=ShippingAddress(
            street=address["street"],
            city=address["city"],
            state=address["state"],
            postal_code=address["postalCode"],
            country=address["country"],
        ),
    )


class CheckoutApi(APIView):
    throttle_classes = [CheckoutClientThrottle]

    @extend_schema(
        request=CheckoutInput,
        # A replay answers whatever the first request was answered.
        responses={201: CheckoutOutput, **problem_responses(409, 422)},
        parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_validate(request.headers.get(IDEMPOTENCY_HEADER))
        body = request.data
        correlation_id = get_correlation_id()

        def operation() -> tuple[int, dict[str, Any]]:
            data = parse(CheckoutInput, body)
            order = services.checkout_create(
                session_id=data["sessionId"],
                customer=_customer(data["customerInfo"]),
                correlation_id=correlation_id,
            )
            return 201, {"orderNumber": order.order_number, "status": order.status, "message": CHECKOUT_MESSAGE}

        result = idempotent_execute(
            key=key,
            method=request.method,
            path=request.path,
            body=body,
            operation=operation,
            error_body=domain_error_body,
        )
        CHECKOUTS.labels(outcome="replayed" if result.replayed else str(result.status)).inc()
        response = Response(
            result.body,
            status=result.status,
            content_type=PROBLEM_CONTENT_TYPE if result.status >= 400 else None,
        )
        if result.replayed:
            response["Idempotent-Replayed"] = "true"
        return response
