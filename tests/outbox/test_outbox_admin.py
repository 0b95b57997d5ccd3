"""The outbox in the admin: read-only rows, filters, search, and the requeue action; who may see what."""
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape

from orders.models import Order
from outbox.models import OutboxEvent, OutboxStatus
from outbox.services import outbox_event_create
from tests.api import add_to_cart, checkout
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/outbox/outboxevent/"


def event(
    aggregate_id: str, *, event_type: str = "TEST_EVENT", topic: str = "orders.created", payload: dict | None = None
) -> OutboxEvent:
    with transaction.atomic():
        return outbox_event_create(
            topic=topic,
            key=aggregate_id,
            aggregate_type="order",
            aggregate_id=aggregate_id,
            event_type=event_type,
            payload=payload if payload is not None else {"aggregate": aggregate_id},
            event_id=uuid.uuid4(),
            correlation_id="test",
        )


def aggregate() -> str:
    return f"agg-{uuid.uuid4().hex}"


def shown(response, *aggregate_ids: str) -> set[str]:
    """Which of the given aggregate ids the page shows."""
    content = response.content.decode()
    return {aggregate_id for aggregate_id in aggregate_ids if aggregate_id in content}


class TestChangelist:
    def test_lists_every_row(self, admin_client):
        ids = [aggregate() for _ in range(3)]
        for aggregate_id in ids:
            event(aggregate_id)

        response = admin_client.get(CHANGELIST)

        assert response.status_code == 200
        assert shown(response, *ids) == set(ids)

    def test_filter_by_status_shows_only_that_status(self, admin_client):
        pending, failed, published = aggregate(), aggregate(), aggregate()
        for aggregate_id in (pending, failed, published):
            event(aggregate_id)
        OutboxEvent.objects.filter(aggregate_id=failed).update(status=OutboxStatus.FAILED)
        OutboxEvent.objects.filter(aggregate_id=published).update(
            status=OutboxStatus.PUBLISHED, published_at=timezone.now()
        )

        response = admin_client.get(CHANGELIST, {"status__exact": "FAILED"})

        assert response.status_code == 200
        assert shown(response, pending, failed, published) == {failed}

    def test_filter_by_event_type(self, admin_client):
        created, cancelled = aggregate(), aggregate()
        event(created, event_type="ORDER_CREATED")
        event(cancelled, event_type="ORDER_CANCELLED")

        response = admin_client.get(CHANGELIST, {"event_type__exact": "ORDER_CANCELLED"})

        assert response.status_code == 200
        assert shown(response, created, cancelled) == {cancelled}

    def test_filter_by_topic(self, admin_client):
        orders, payments = aggregate(), aggregate()
        event(orders, topic="orders.created")
        event(payments, topic="payments.processed")

        response = admin_client.get(CHANGELIST, {"topic__exact": "payments.processed"})

        assert response.status_code == 200
        assert shown(response, orders, payments) == {payments}

    def test_search_by_aggregate_id(self, admin_client):
        wanted, other = aggregate(), aggregate()
        event(wanted)
        event(other)

        response = admin_client.get(CHANGELIST, {"q": wanted})

        assert response.status_code == 200
        assert shown(response, wanted, other) == {wanted}

    def test_search_by_event_id(self, admin_client):
        wanted, other = aggregate(), aggregate()
        row = event(wanted)
        event(other)

        response = admin_client.get(CHANGELIST, {"q": str(row.event_id)})

        assert response.status_code == 200
        assert shown(response, wanted, other) == {wanted}

    def test_search_by_order_number_finds_the_checkout_event(self, admin_client, api_client, session_id):
        add_to_cart(api_client, session_id, ProductFactory(inventory_quantity=5).id, 1)
        assert checkout(api_client, session_id, str(uuid.uuid4())).status_code == 201
        order = Order.objects.get()
        other = aggregate()
        event(other, payload={"orderNumber": "ORD-19990101-999999"})

        response = admin_client.get(CHANGELIST, {"q": order.order_number})

        assert response.status_code == 200
        assert shown(response, str(order.id), other) == {str(order.id)}
        assert shown(response, "ORD-19990101-999999") == set()


class TestChangePage:
    def test_shows_the_payload_pretty_printed_and_no_payload_input(self, admin_client):
        payload = {"orderNumber": "ORD-20250101-000001", "items": [{"sku": "SKU-1", "quantity": 2}], "total": "39.98"}
        row = event(aggregate(), payload=payload)

        response = admin_client.get(f"{CHANGELIST}{row.id}/change/")

        assert response.status_code == 200
        content = response.content.decode()
        assert f"<pre>{escape(json.dumps(payload, indent=2, sort_keys=True))}</pre>" in content
        assert 'name="payload"' not in content
        assert 'name="status"' not in content
        assert 'name="_save"' not in content  # read-only: nothing to submit

    def test_posting_a_change_does_not_alter_the_row(self, admin_client):
        payload = {"orderNumber": "ORD-20250101-000002"}
        row = event(aggregate(), payload=payload)

        response = admin_client.post(
            f"{CHANGELIST}{row.id}/change/",
            {"payload": json.dumps({"orderNumber": "TAMPERED"}), "status": "PUBLISHED", "_save": "Save"},
        )

        assert response.status_code == 403
        row.refresh_from_db()
        assert row.payload == payload
        assert row.status == OutboxStatus.PENDING

    def test_rows_cannot_be_added(self, admin_client):
        response = admin_client.get(f"{CHANGELIST}add/")

        assert response.status_code == 403
        assert OutboxEvent.objects.count() == 0


class TestRequeueAction:
    def test_requeues_selected_failed_and_refused_rows_only(self, admin_client):
        published_at = timezone.now() - timedelta(minutes=5)
        retry_at = timezone.now() + timedelta(minutes=5)
        failed_one, refused, failed_unselected, published, pending = (event(aggregate()) for _ in range(5))
        OutboxEvent.objects.filter(id__in=[failed_one.id, failed_unselected.id]).update(
            status=OutboxStatus.FAILED, attempts=5, last_error="KafkaTimeoutError: boom"
        )
        OutboxEvent.objects.filter(id=refused.id).update(
            status=OutboxStatus.REFUSED, attempts=1, last_error="MessageSizeTooLargeError: too big"
        )
        OutboxEvent.objects.filter(id=published.id).update(
            status=OutboxStatus.PUBLISHED, attempts=1, published_at=published_at
        )
        OutboxEvent.objects.filter(id=pending.id).update(attempts=2, next_attempt_at=retry_at)

        response = admin_client.post(
            CHANGELIST,
            {
                "action": "requeue_failed",
                "_selected_action": [failed_one.id, refused.id, published.id, pending.id],
                "index": 0,
            },
        )

        assert response.status_code == 302
        rows = {
            row["id"]: row
            for row in OutboxEvent.objects.values("id", "status", "attempts", "next_attempt_at", "published_at")
        }
        assert rows[failed_one.id] == {
            "id": failed_one.id, "status": "PENDING", "attempts": 0, "next_attempt_at": None, "published_at": None,
        }  # fmt: skip
        assert rows[refused.id] == {
            "id": refused.id, "status": "PENDING", "attempts": 0, "next_attempt_at": None, "published_at": None,
        }  # fmt: skip
        assert rows[published.id] == {
            "id": published.id, "status": "PUBLISHED", "attempts": 1, "next_attempt_at": None, "published_at": published_at,
        }  # fmt: skip
        assert rows[pending.id] == {
            "id": pending.id, "status": "PENDING", "attempts": 2, "next_attempt_at": retry_at, "published_at": None,
        }  # fmt: skip
        assert rows[failed_unselected.id]["status"] == "FAILED" and rows[failed_unselected.id]["attempts"] == 5

        page = admin_client.get(CHANGELIST)
        assert "Requeued 2 FAILED or REFUSED row(s); other rows were left alone." in page.content.decode()


class TestOtherChangelists:
    def test_orders_and_products_changelists_answer(self, admin_client, api_client, session_id):
        product = ProductFactory(inventory_quantity=5, sku="SKU-ADMIN-LIST")
        add_to_cart(api_client, session_id, product.id, 1)
        assert checkout(api_client, session_id, str(uuid.uuid4())).status_code == 201
        order = Order.objects.get()

        orders = admin_client.get("/admin/orders/order/")
        products = admin_client.get("/admin/catalog/product/")

        assert orders.status_code == 200
        assert order.order_number in orders.content.decode()
        assert products.status_code == 200
        assert "SKU-ADMIN-LIST" in products.content.decode()


class TestDemoManager:
    @pytest.fixture
    def manager(self, client):
        call_command("seed_demo", stdout=io.StringIO())
        assert client.login(username="manager", password="manager123")
        return client

    def test_can_view_the_outbox_and_orders(self, manager):
        row = event(aggregate())

        outbox = manager.get(CHANGELIST)
        orders = manager.get("/admin/orders/order/")

        assert outbox.status_code == 200
        assert row.aggregate_id in outbox.content.decode()
        assert orders.status_code == 200

    def test_cannot_add_an_order(self, manager):
        response = manager.get("/admin/orders/order/add/")

        assert response.status_code == 403
        assert Order.objects.count() == 0

    def test_cannot_requeue(self, manager):
        row = event(aggregate())
        OutboxEvent.objects.filter(id=row.id).update(status=OutboxStatus.FAILED, attempts=5)

        manager.post(CHANGELIST, {"action": "requeue_failed", "_selected_action": [row.id], "index": 0})

        row.refresh_from_db()
        assert (row.status, row.attempts) == (OutboxStatus.FAILED, 5)
