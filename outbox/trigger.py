"""Wake the relay when a transaction that wrote outbox rows commits.

Coalesced: a burst of commits sets one Redis flag and enqueues one relay
run; the run clears the flag before it claims, so a commit after that point
enqueues the next run and no row waits for the sweep. Best effort by
design: if Redis is slow or down, nothing is enqueued, the checkout does not
wait, and the beat sweep publishes the row a few seconds later.
"""
import logging

import redis
from django.conf import settings
from django.db import transaction

from resilience.redis_client import fail_fast_client
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

FLAG_KEY = "outbox:relay:scheduled"
# A flag whose run never started (worker down) expires, so triggers resume.
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
        if not _redis().set(FLAG_KEY, "1", nx=True, ex=FLAG_TTL_SECONDS):
            return  # a run is already on its way and will see this row
        from outbox.tasks import relay

        relay.apply_async(retry=False)
    except Exception as error:  # Redis or the Celery broker: the sweep will catch up
        _suspension.trip()
        logger.warning("relay wake-up skipped", extra={"event": "resilience", "error": repr(error)})


def outbox_relay_wake_on_commit() -> None:
    if settings.OUTBOX_TRIGGER_ON_COMMIT:
        transaction.on_commit(outbox_relay_wake)


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
