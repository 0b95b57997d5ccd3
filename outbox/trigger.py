"""Wake the relay when a transaction that wrote outbox rows commits.

Coalesced: the first commit sets a Redis flag and enqueues one relay run;
while the flag is set, further commits enqueue nothing, because the run keeps
draining until it finds no work. Only then does it clear the flag and make
one last pass, which sees every row committed before the clear; a commit
after the clear enqueues the next run. So no row waits for the sweep, and a
busy platform runs one relay task instead of one per checkout. Best effort
by design: if Redis is slow or down, nothing is enqueued, the checkout does
not wait, and the beat sweep publishes the row a few seconds later.
"""
import logging
import time

import redis
from django.conf import settings
from django.db import transaction

from resilience.redis_client import fail_fast_client
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

FLAG_KEY = "outbox:relay:scheduled"
# A flag whose run never started (worker down) or died expires, so wake-ups resume.
FLAG_TTL_SECONDS = 5

_suspension = Suspension(5.0)
_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)
    return _client


def outbox_relay_wake() -> None:
    if _suspension.active():
        return
    try:
        if not _flag_set():
            return  # a run is already on its way and will see this row
        from outbox.tasks import relay

        relay.apply_async(retry=False)
    except Exception as error:  # Redis or the Celery broker: the sweep will catch up
        _suspension.trip()
        logger.warning("relay wake-up skipped", extra={"event": "resilience", "error": repr(error)})


def outbox_relay_wake_on_commit() -> None:
    if settings.OUTBOX_TRIGGER_ON_COMMIT:
        transaction.on_commit(outbox_relay_wake)


def outbox_relay_run(*, batch_size: int, time_budget_seconds: float) -> None:
    """Drain until idle, release the flag, and drain once more (see the module docstring)."""
    from outbox.relay import outbox_drain

    deadline = time.monotonic() + time_budget_seconds
    while True:
        remaining = deadline - time.monotonic()
        report = outbox_drain(batch_size=batch_size, time_budget_seconds=max(remaining, 0.0))
        if report.breaker_open:
            outbox_relay_flag_clear()  # the sweep retries once the breaker lets it
            return
        if time.monotonic() >= deadline:
            # Out of time with work left: hand over to a fresh run rather than
            # leave rows waiting for the sweep.
            outbox_relay_flag_clear()
            outbox_relay_wake()
            return
        if report.published:
            continue
        outbox_relay_flag_clear()
        final = outbox_drain(batch_size=batch_size, time_budget_seconds=max(deadline - time.monotonic(), 0.0))
        if not final.published:
            return
        if not _flag_take():
            return  # a commit after the clear already enqueued the next run


def _flag_set() -> bool:
    """Take the wake-up flag; False if it is already set."""
    return bool(_redis().set(FLAG_KEY, "1", nx=True, ex=FLAG_TTL_SECONDS))


def _flag_take() -> bool:
    try:
        return _flag_set()
    except Exception:
        return True  # keep draining; without Redis the flag means nothing anyway


def outbox_relay_flag_clear() -> None:
    try:
        _redis().delete(FLAG_KEY)
    except Exception:
        pass  # the flag expires by itself


def outbox_trigger_reset() -> None:
    """Forget the client and any back-off (settings changed, or between tests)."""
    global _client
    _client = None
    _suspension.reset()
