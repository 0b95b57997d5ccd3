"""What every periodic job (cleanup, requeue, purge, vacuum, reconcile, audit) shares: its retry on a transient outage.

A job that meets a database or Redis outage retries with Celery's own
`autoretry_for`/`retry_backoff` rather than waiting for its next interval (up
to an hour for the purges). Celery computes that wait itself (exponential,
full jitter, capped by `retry_backoff_max`): the retry is a delayed broker
message Celery schedules, so `resilience.backoff` cannot be its formula. Every
job is safe to run twice or alongside its next beat run (SKIP LOCKED claims,
idempotent deletes and refunds). Any other error is a bug or bad data: it
fails the run, which the next interval repeats.

The outbox relay is not among them: its retry state is per row, in the
database (outbox/relay.py says why).
"""
from typing import Any

import redis.exceptions
from django.db import InterfaceError, OperationalError

TRANSIENT_JOB_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)

PERIODIC_JOB_RETRY: dict[str, Any] = {
    "autoretry_for": TRANSIENT_JOB_ERRORS,
    # 2, 4, 8 … s (jittered), at most a minute apart: a restarting PostgreSQL
    # is back within that, and the shortest job interval is 60 s.
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    # About two minutes of outage in all; past that the next beat run takes over.
    "max_retries": 5,
}
