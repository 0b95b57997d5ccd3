"""The Celery application; ecommerce/__init__.py re-exports it so shared_task binds.

It also keeps, in Redis, when each task last succeeded (`job_last_successes`):
the proof that the periodic jobs run, read by /metrics at scrape time; and
when beat last started (`beat_started_at`), since a job is only due one
interval after beat began sending it.
"""
import logging
import os
import time

import redis
from celery import Celery
from celery.signals import beat_init, task_prerun, task_success
from django.conf import settings

from resilience.redis_client import shared_fail_fast_client

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ecommerce.settings.local")

logger = logging.getLogger(__name__)

app = Celery("ecommerce")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A hash: task name -> unix time of its last success.
JOB_SUCCESS_KEY = "jobs:last-success"
# A string: unix time at which the beat scheduler last started.
BEAT_STARTED_KEY = "jobs:beat-started"


def _jobs_redis() -> redis.Redis:
    return shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)


def job_success_record(*, task_name: str, at: float) -> None:
    """Record that `task_name` succeeded at unix time `at`."""
    _jobs_redis().hset(JOB_SUCCESS_KEY, task_name, repr(at))


def job_last_successes() -> dict[str, float]:
    """Return each task name's last success (unix time); raise redis.RedisError when Redis is down."""
    return {name.decode(): float(value) for name, value in _jobs_redis().hgetall(JOB_SUCCESS_KEY).items()}


def beat_start_record(*, at: float) -> None:
    """Record that beat started at unix time `at`."""
    _jobs_redis().set(BEAT_STARTED_KEY, repr(at))


def beat_started_at() -> float | None:
    """Return when beat last started (unix time; None if never recorded); raise redis.RedisError when Redis is down."""
    value = _jobs_redis().get(BEAT_STARTED_KEY)
    return float(value) if value is not None else None


@beat_init.connect
def _record_beat_start(sender=None, **kwargs) -> None:
    """Note when beat starts; losing the note (Redis down) must never stop beat."""
    try:
        beat_start_record(at=time.time())
    except redis.RedisError as error:
        logger.warning("could not record the beat start", extra={"error": repr(error)})


@task_prerun.connect
def _drop_unusable_connections(sender=None, **kwargs) -> None:
    """Keep connections across tasks (CELERY_DB_REUSE_MAX), but never a broken or expired one."""
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # run in the caller's process and transaction, as Celery's own fixup does
    from django.db import close_old_connections

    close_old_connections()


@task_success.connect
def _record_job_success(sender=None, **kwargs) -> None:
    """Note the task's success; losing the note (Redis down) must never fail the task."""
    if sender is None:
        return
    try:
        job_success_record(task_name=sender.name, at=time.time())
    except redis.RedisError as error:
        logger.warning("could not record a job success", extra={"task": sender.name, "error": repr(error)})
