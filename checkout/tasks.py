"""Periodic jobs of the customer side (scheduled by `manage.py setup_schedules`)."""
from celery import shared_task
from django.conf import settings

from checkout.idempotency import idempotency_records_expired_delete
from checkout.metrics import CART_CLEANUP_DELETED
from checkout.services import carts_expired_delete
from core.tasks import PERIODIC_JOB_RETRY


@shared_task(name="checkout.idempotency_cleanup", soft_time_limit=300, time_limit=330, **PERIODIC_JOB_RETRY)
def idempotency_cleanup() -> None:
    idempotency_records_expired_delete(batch_size=settings.CLEANUP_BATCH_SIZE)


@shared_task(name="checkout.cart_cleanup", soft_time_limit=300, time_limit=330, **PERIODIC_JOB_RETRY)
def cart_cleanup() -> None:
    CART_CLEANUP_DELETED.inc(carts_expired_delete(batch_size=settings.CLEANUP_BATCH_SIZE))
