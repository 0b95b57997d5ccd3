"""Wake the relay when a transaction that wrote outbox rows commits.

Coalesced: the first commit sets a Redis flag and enqueues one relay run;
while the flag is set, further commits enqueue nothing, because the run keeps
draining until it finds no work (`outbox.relay.outbox_relay_run`). Only then
does it clear the flag and make one last pass, which sees every row committed
before the clear; a commit after the clear enqueues the next run. So no row
waits for the sweep, and a busy platform runs one relay task instead of one
per checkout. Best effort by design: if Redis is slow or down, nothing is
enqueued, the checkout does not wait, and the beat sweep publishes the row a
few seconds later.

The run is enqueued by task name, so this module imports neither the relay
nor the tasks: it only owns the wake-up and its flag.
"""
import logging

import redis
from celery import current_app
from django.conf import settings
from django.db import transaction

from resilience.redis_client import shared_fail_fast_client
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

RELAY_TASK = "outbox.relay"
FLAG_KEY = "outbox:relay:scheduled"
# A flag whose run never started (worker down) or died expires, so wake-ups resume.
FLAG_TTL_SECONDS = 5

_suspension = Suspension(5.0)


def _redis() -> redis.Redis:
    return shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)


def outbox_relay_wake() -> None:
    """Enqueue one relay run unless one is already on its way."""
    if _suspension.active():
        return
    try:
        if not _flag_set():
            return  # a run is already on its way and will see this row
        current_app.send_task(RELAY_TASK, retry=False)
    except Exception as error:  # Redis or the Celery broker: the sweep will catch up
        _suspension.trip()
        logger.warning("relay wake-up skipped", extra={"event": "resilience", "error": repr(error)})


def outbox_relay_hand_over() -> None:
    """Enqueue the successor of a run that ran out of time with work left, whatever the flag says.

    Through the flag, two runs out of time together (the worker's processes
    draining a backlog side by side) got one successor between them, or none
    when a commit had just taken the flag, and the drain went on in one
    process. Each run hands over to one successor, so their number stays what it was.
    """
    try:
        current_app.send_task(RELAY_TASK, retry=False)
    except Exception as error:  # the Celery broker: the sweep will catch up
        logger.warning("relay hand-over skipped", extra={"event": "resilience", "error": repr(error)})


def outbox_relay_wake_on_commit() -> None:
    """Wake the relay once the caller's transaction commits (if wake-ups are on)."""
    if settings.OUTBOX_TRIGGER_ON_COMMIT:
        transaction.on_commit(outbox_relay_wake)


def _flag_set() -> bool:
    """Take the wake-up flag; False if it is already set."""
    return bool(_redis().set(FLAG_KEY, "1", nx=True, ex=FLAG_TTL_SECONDS))


def outbox_relay_flag_take() -> bool:
    """Take the flag for a run that keeps draining; False if a newer wake-up already holds it."""
    try:
        return _flag_set()
    except Exception:
        return True  # keep draining; without Redis the flag means nothing anyway


def outbox_relay_flag_clear() -> None:
    """Release the flag so the next commit enqueues a run."""
    try:
        _redis().delete(FLAG_KEY)
    except Exception:
        pass  # the flag expires by itself


def outbox_trigger_reset() -> None:
    """Forget any back-off (between tests; a changed REDIS_URL gets its own client anyway)."""
    _suspension.reset()
