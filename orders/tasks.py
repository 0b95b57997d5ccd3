"""Order management's periodic jobs (scheduled by `manage.py setup_schedules`)."""
from celery import shared_task
from django.conf import settings

from core.tasks import PERIODIC_JOB_RETRY
from orders.audit import payment_charges_audit
from orders.processing import processed_events_purge
from orders.reconciliation import orders_reconcile

# The run's own budget stays well under the soft limit, so it ends on its own
# first; an order in flight when the budget ends is finished, not abandoned.
RECONCILE_BUDGET_SECONDS = 60
# The same for the audit: it resumes where the budget ended (its watermark).
AUDIT_BUDGET_SECONDS = 120


@shared_task(name="orders.processed_events_purge", soft_time_limit=300, time_limit=330, **PERIODIC_JOB_RETRY)
def purge_processed_events() -> None:
    processed_events_purge(
        older_than_days=settings.PROCESSED_EVENT_RETENTION_DAYS, batch_size=settings.CLEANUP_BATCH_SIZE
    )


@shared_task(name="orders.reconcile", soft_time_limit=240, time_limit=270, **PERIODIC_JOB_RETRY)
def reconcile() -> None:
    """Drive orders stuck in PENDING or PROCESSING to a terminal state."""
    orders_reconcile(
        older_than_seconds=settings.ORDER_RECONCILE_AFTER_SECONDS,
        max_attempts=settings.ORDER_RECONCILE_MAX_ATTEMPTS,
        time_budget_seconds=RECONCILE_BUDGET_SECONDS,
    )


@shared_task(name="orders.payment_audit", soft_time_limit=240, time_limit=270, **PERIODIC_JOB_RETRY)
def payment_audit() -> None:
    """Refund the charges made since the last run whose order is not PAID."""
    payment_charges_audit(
        grace_seconds=settings.PAYMENT_AUDIT_GRACE_SECONDS,
        unsettled_wait_seconds=settings.PAYMENT_AUDIT_UNSETTLED_WAIT_SECONDS,
        max_attempts=settings.ORDER_RECONCILE_MAX_ATTEMPTS,
        backoff_base_seconds=settings.ORDER_RECONCILE_AFTER_SECONDS,
        time_budget_seconds=AUDIT_BUDGET_SECONDS,
    )
