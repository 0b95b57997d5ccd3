"""A periodic job that meets a transient database outage retries at once (Celery autoretry), not at its next interval."""
import uuid

import pytest
from celery.signals import task_retry
from django.db import OperationalError, connection

from core.tasks import PERIODIC_JOB_RETRY
from outbox.models import OutboxEvent, OutboxStatus
from outbox.tasks import requeue_failed
from tests.support import free_port, outbox_test_event

pytestmark = pytest.mark.django_db(transaction=True)


class DatabaseOutage:
    """Point this thread's connection at a closed port (a real refusal), and back at PostgreSQL."""

    def __init__(self) -> None:
        self.real_port = connection.settings_dict["PORT"]

    def begin(self) -> None:
        connection.close()
        connection.settings_dict["PORT"] = free_port()

    def end(self) -> None:
        connection.close()
        connection.settings_dict["PORT"] = self.real_port


@pytest.fixture
def outage():
    outage = DatabaseOutage()
    yield outage
    outage.end()


@pytest.fixture
def retries():
    """The reasons of `requeue_failed`'s retries; a test may add what happens on each (`on_retry`)."""
    seen: list[BaseException] = []
    seen_actions = []

    def record(sender=None, reason=None, **kwargs) -> None:
        seen.append(reason)
        for action in seen_actions:
            action()

    task_retry.connect(record, sender=requeue_failed, weak=False)
    yield seen, seen_actions
    task_retry.disconnect(record, sender=requeue_failed)


def _failed_row() -> OutboxEvent:
    row = outbox_test_event(str(uuid.uuid4()))
    OutboxEvent.objects.filter(id=row.id).update(status=OutboxStatus.FAILED, attempts=5)
    return row


def _refused(reason: BaseException) -> bool:
    return isinstance(getattr(reason, "exc", None), OperationalError)


def test_requeue_retries_through_a_database_outage_and_then_does_its_work(outage, retries):
    # given a FAILED row, and PostgreSQL unreachable until the job's first retry
    seen, on_retry = retries
    row = _failed_row()
    outage.begin()
    on_retry.append(outage.end)

    # when the job runs (eagerly: Celery runs the retry at once instead of after its backoff)
    result = requeue_failed.apply()

    # then it retried once, on the refused connection, and the retry did the work
    assert result.successful(), result.traceback
    assert len(seen) == 1 and _refused(seen[0])
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)


def test_requeue_gives_up_after_its_retries_when_the_outage_lasts(outage, retries):
    seen, _ = retries
    row = _failed_row()
    outage.begin()

    result = requeue_failed.apply()

    assert result.failed()
    assert isinstance(result.result, OperationalError)
    assert len(seen) == PERIODIC_JOB_RETRY["max_retries"] and all(_refused(reason) for reason in seen)
    outage.end()
    assert OutboxEvent.objects.get(id=row.id).status == OutboxStatus.FAILED  # nothing requeued
