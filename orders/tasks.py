"""Order management's periodic jobs (scheduled by `manage.py setup_schedules`)."""
from celery import shared_task
from django.conf import settings

from orders.processing import processed_events_purge


@shared_task(name="orders.processed_events_purge", soft_time_limit=300, time_limit=330)
def purge_processed_events() -> None:
    processed_events_purge(
        older_than_days=settings.PROCESSED_EVENT_RETENTION_DAYS, batch_size=settings.CLEANUP_BATCH_SIZE
    )
