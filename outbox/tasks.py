"""Relay and housekeeping tasks (scheduled by `manage.py setup_schedules`)."""
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from core.tasks import PERIODIC_JOB_RETRY
from outbox.run import outbox_relay_run
from outbox.services import outbox_failed_requeue, outbox_published_purge, outbox_vacuum

# Task limits: the hard one kills a wedged worker process; the drain's own
# budget stays well under the soft one so a run ends on its own first.
RELAY_SOFT_LIMIT_SECONDS = 30
RELAY_HARD_LIMIT_SECONDS = 45
RELAY_BUDGET_SECONDS = 15


# No Celery autoretry: each row keeps its own retry state (outbox/relay.py says why),
# and the next wake-up or beat sweep starts the next run.
@shared_task(name="outbox.relay", soft_time_limit=RELAY_SOFT_LIMIT_SECONDS, time_limit=RELAY_HARD_LIMIT_SECONDS)
def relay(batch_size: int | None = None) -> None:
    """Publish due outbox rows (woken by commits, and by the beat sweep)."""
    outbox_relay_run(
        batch_size=batch_size or settings.OUTBOX_BATCH_SIZE,
        time_budget_seconds=RELAY_BUDGET_SECONDS,
        linger_seconds=settings.OUTBOX_RELAY_LINGER_SECONDS,
    )


@shared_task(name="outbox.requeue_failed", soft_time_limit=120, time_limit=150, **PERIODIC_JOB_RETRY)
def requeue_failed() -> None:
    """Give FAILED rows fresh attempts (their cause may be gone: a broker back, a limit raised)."""
    outbox_failed_requeue(batch_size=settings.CLEANUP_BATCH_SIZE)


@shared_task(name="outbox.purge_published", soft_time_limit=300, time_limit=330, **PERIODIC_JOB_RETRY)
def purge_published() -> None:
    """Delete PUBLISHED rows past the retention."""
    outbox_published_purge(
        older_than=timedelta(hours=settings.OUTBOX_RETENTION_HOURS), batch_size=settings.CLEANUP_BATCH_SIZE
    )


@shared_task(name="outbox.vacuum", soft_time_limit=120, time_limit=150, **PERIODIC_JOB_RETRY)
def vacuum() -> None:
    """Keep the claim query fast even where autovacuum is off (see migration 0002)."""
    outbox_vacuum()
