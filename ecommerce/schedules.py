"""The platform's periodic jobs, installed into django-celery-beat's tables.

Kept as data so `manage.py setup_schedules` can converge the database on it:
running it again, or from two deploys at once, changes nothing.
"""
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Schedule:
    name: str
    task: str
    every_seconds: int


def schedules() -> list[Schedule]:
    return [
        Schedule("idempotency-cleanup", "checkout.idempotency_cleanup", settings.IDEMPOTENCY_CLEANUP_INTERVAL_SECONDS),
        Schedule("cart-cleanup", "checkout.cart_cleanup", settings.CART_CLEANUP_INTERVAL_SECONDS),
        # The safety net for commits whose wake-up was lost (Redis down, worker restarted).
        Schedule("outbox-sweep", "outbox.relay", settings.OUTBOX_SWEEP_INTERVAL_SECONDS),
        Schedule("outbox-requeue-failed", "outbox.requeue_failed", settings.OUTBOX_REQUEUE_INTERVAL_SECONDS),
        Schedule("outbox-purge-published", "outbox.purge_published", settings.OUTBOX_PURGE_INTERVAL_SECONDS),
        Schedule("outbox-vacuum", "outbox.vacuum", settings.OUTBOX_VACUUM_INTERVAL_SECONDS),
        Schedule(
            "processed-events-purge", "orders.processed_events_purge", settings.PROCESSED_EVENT_PURGE_INTERVAL_SECONDS
        ),
        # Anti-entropy: stuck orders driven to a terminal state, charges without a PAID order refunded.
        Schedule("orders-reconcile", "orders.reconcile", settings.ORDER_RECONCILE_INTERVAL_SECONDS),
        Schedule("orders-payment-audit", "orders.payment_audit", settings.PAYMENT_AUDIT_INTERVAL_SECONDS),
    ]
