"""Idempotency-Key per docs/contract.md "Idempotency-Key" (IETF httpapi draft / Stripe behaviour)."""
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from catalog.models import Product
from checkout import services
from checkout.idempotency import idempotency_records_expired_delete, request_fingerprint
from checkout.models import IdempotencyRecord
from checkout.tasks import idempotency_cleanup
from orders.models import Order
from outbox.models import OutboxEvent
from tests.api import add_to_cart, checkout, customer_info
from tests.factories import ProductFactory


@pytest.fixture
def cart(api_client, session_id):
    product = ProductFactory(inventory_quantity=10)
    add_to_cart(api_client, session_id, product.id, 2)
    return product


@pytest.mark.django_db
class TestKeyValidation:
    def test_missing_key_is_400_and_creates_nothing(self, api_client, session_id, cart):
        response = checkout(api_client, session_id, key=None)
        assert response.status_code == 400
        assert response["Content-Type"] == "application/problem+json"
        assert "Idempotency-Key" in response.json()["detail"]
        assert Order.objects.count() == 0 and IdempotencyRecord.objects.count() == 0

    def test_blank_key_is_400(self, api_client, session_id, cart):
        assert checkout(api_client, session_id, key="   ").status_code == 400
        assert Order.objects.count() == 0

    def test_key_longer_than_255_is_400(self, api_client, session_id, cart):
        response = checkout(api_client, session_id, key="k" * 256)
        assert response.status_code == 400
        assert Order.objects.count() == 0 and IdempotencyRecord.objects.count() == 0

    def test_key_of_255_is_accepted(self, api_client, session_id, cart):
        assert checkout(api_client, session_id, key="k" * 255).status_code == 201


@pytest.mark.django_db
class TestReplay:
    def test_same_request_replays_status_body_and_header(self, api_client, session_id, cart):
        key = str(uuid.uuid4())
        first = checkout(api_client, session_id, key)
        second = checkout(api_client, session_id, key)

        assert first.status_code == second.status_code == 201
        assert second.json() == first.json()
        assert "Idempotent-Replayed" not in first
        assert second["Idempotent-Replayed"] == "true"
        assert Order.objects.count() == 1
        assert OutboxEvent.objects.count() == 1
        cart.refresh_from_db()
        assert cart.inventory_quantity == 8

    def test_key_order_and_spacing_do_not_change_the_fingerprint(self):
        body = {"sessionId": "s", "customerInfo": customer_info()}
        reordered = {"customerInfo": dict(reversed(list(customer_info().items()))), "sessionId": "s"}
        assert request_fingerprint(method="POST", path="/x", body=body) == request_fingerprint(
            method="post", path="/x", body=reordered
        )

    def test_different_request_with_same_key_is_422(self, api_client, session_id, cart):
        key = str(uuid.uuid4())
        assert checkout(api_client, session_id, key).status_code == 201
        response = checkout(api_client, session_id, key, name="Somebody Else")
        assert response.status_code == 422
        assert response["Content-Type"] == "application/problem+json"
        assert "Idempotent-Replayed" not in response
        assert Order.objects.count() == 1 and OutboxEvent.objects.count() == 1

    def test_4xx_outcome_is_stored_and_replayed(self, api_client, session_id, cart):
        key = str(uuid.uuid4())
        Product.objects.filter(id=cart.id).update(inventory_quantity=1)
        first = checkout(api_client, session_id, key)
        assert first.status_code == 409
        Product.objects.filter(id=cart.id).update(inventory_quantity=10)  # restocked meanwhile

        second = checkout(api_client, session_id, key)

        assert second.status_code == 409
        assert second.json() == first.json()
        assert second["Idempotent-Replayed"] == "true"
        assert Order.objects.count() == 0

    def test_5xx_outcome_is_not_stored_so_a_retry_runs_again(self, api_client, session_id, cart, monkeypatch):
        key = str(uuid.uuid4())
        real_checkout = services.checkout_create
        calls = []

        def fail_once(**kwargs):
            calls.append(kwargs)
            if len(calls) == 1:
                raise RuntimeError("injected fault")
            return real_checkout(**kwargs)

        monkeypatch.setattr(services, "checkout_create", fail_once)
        first = checkout(api_client, session_id, key)
        assert first.status_code == 500
        assert first["Content-Type"] == "application/problem+json"
        assert "injected" not in first.content.decode() and "Traceback" not in first.content.decode()
        assert IdempotencyRecord.objects.count() == 0 and Order.objects.count() == 0

        second = checkout(api_client, session_id, key)
        assert second.status_code == 201
        assert "Idempotent-Replayed" not in second
        assert Order.objects.count() == 1

    def test_expired_record_frees_the_key(self, api_client, session_id, cart):
        key = str(uuid.uuid4())
        assert checkout(api_client, session_id, key).status_code == 201
        IdempotencyRecord.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
        add_to_cart(api_client, session_id, cart.id, 1)

        response = checkout(api_client, session_id, key, name="New Request")

        assert response.status_code == 201
        assert "Idempotent-Replayed" not in response
        assert Order.objects.count() == 2

    def test_records_are_kept_24_hours(self, api_client, session_id, cart):
        checkout(api_client, session_id, str(uuid.uuid4()))
        record = IdempotencyRecord.objects.get()
        assert record.expires_at - record.created_at == pytest.approx(timedelta(hours=24), abs=timedelta(seconds=5))


def _deleted_total() -> float:
    return REGISTRY.get_sample_value("idempotency_cleanup_deleted_total") or 0.0


@pytest.mark.django_db
class TestCleanup:
    def _record(self, key: str, expires_in: timedelta) -> None:
        IdempotencyRecord.objects.create(
            key=key,
            fingerprint="f",
            method="POST",
            path="/api/v1/checkout",
            response_status=201,
            response_body={},
            expires_at=timezone.now() + expires_in,
        )

    def test_job_deletes_only_expired_records_in_batches_and_counts_them(self):
        for index in range(7):
            self._record(f"old-{index}", timedelta(hours=-1))
        self._record("fresh", timedelta(hours=1))
        before = _deleted_total()

        deleted = idempotency_records_expired_delete(batch_size=3)

        assert deleted == 7
        assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]
        assert _deleted_total() - before == 7

    def test_celery_task_runs_the_cleanup(self, settings):
        self._record("old", timedelta(hours=-1))
        idempotency_cleanup.apply()  # run in-process, as a worker would
        assert IdempotencyRecord.objects.count() == 0


@pytest.mark.many_connections
@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_requests_with_one_key_make_exactly_one_order(session_id):
    product = ProductFactory(inventory_quantity=10)
    add_to_cart(APIClient(), session_id, product.id, 2)
    key = str(uuid.uuid4())
    start = threading.Barrier(50)

    def send(_: int):
        start.wait()
        try:
            response = checkout(APIClient(), session_id, key)
            return response.status_code, response.get("Idempotent-Replayed"), response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(send, range(50)))

    created = [body for status, replayed, body in results if status == 201 and replayed is None]
    replayed = [body for status, replayed, body in results if status == 201 and replayed == "true"]
    in_flight = [body for status, _, body in results if status == 409]
    assert len(created) == 1
    assert len(created) + len(replayed) + len(in_flight) == 50
    assert all(body == created[0] for body in replayed)
    assert all(body["type"].endswith("idempotency-key-in-flight") for body in in_flight)
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.count() == 1
    product.refresh_from_db()
    assert product.inventory_quantity == 8
