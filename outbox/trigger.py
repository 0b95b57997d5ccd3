"""Wake the relay when a transaction that wrote outbox rows commits.

Coalesced: the first commit sets a Redis flag and enqueues one relay run;
while the flag is set, further commits enqueue nothing, because the run keeps
draining until it finds no work (`outbox.run.outbox_relay_run`). Only then
does it clear the flag and make one last pass, which sees every row committed
before the clear; a commit after the clear enqueues the next run. So no row
waits for the sweep, and a busy platform runs one relay task instead of one
per checkout. Best effort by design: if Redis is slow or down, nothing is
enqueued, the checkout does not wait, and the beat sweep publishes the row a
few seconds later.

While checkouts keep coming, one run stays (`outbox_relay_linger`): each
wake-up also pushes a nudge onto a Redis list in the same round trip, and
the staying run blocks on that list and drains again as soon as one comes,
holding the flag so commits enqueue nothing. A run per commit cost a Celery
task each (about 1.6 per order at 15 checkouts/s: the worker's receive, ack
and events, the web's enqueue, Flower's event handling), more than the
publishing itself. One run at a time stays (a Redis lock), so the worker's
other process is free for the periodic jobs, and a run stays only while rows
keep coming (`OUTBOX_RELAY_LINGER_SECONDS` without a nudge and it ends), so
an idle platform holds no process. Without Redis nothing stays and every run
ends as before. The staying run's flag holds its lock's token: a run that
cannot stay beside it (the beat's sweep, or a commit's run that raced its
start) ends without clearing that flag, which the staying run clears as it
ends. Cleared by such a run, the next commit enqueued a run, which could not
stay either and cleared it again: a task per commit until the staying run
renewed the flag, a second later, after every sweep. (LISTEN/NOTIFY from an
outbox trigger was tried first: it needs no Redis, but PostgreSQL spent more
CPU per order with it; README, "Cost per order".)

The run is enqueued by task name, so this module imports neither the relay
nor the tasks: it only owns the wake-up, its flag and the lingering.
"""
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from celery import current_app
from django.conf import settings
from django.db import transaction
from redis.lock import Lock

from resilience.redis_client import shared_fail_fast_client
from resilience.suspension import Suspension

logger = logging.getLogger(__name__)

RELAY_TASK = "outbox.relay"
FLAG_KEY = "outbox:relay:scheduled"
# A flag whose run never started (worker down) or died expires, so wake-ups resume.
FLAG_TTL_SECONDS = 5
# The staying run's lock, and the list each wake-up nudges it through.
LINGER_LOCK_KEY = "outbox:relay:lingering"
NUDGE_KEY = "outbox:relay:nudge"
# A lingering run renews the flag and its lock this often (well inside
# FLAG_TTL_SECONDS), so both expire within seconds if its process dies.
LINGER_RENEW_SECONDS = 1.0

_suspension = Suspension(5.0)


def _redis() -> redis.Redis:
    return shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=settings.REDIS_SOCKET_TIMEOUT_SECONDS)


def outbox_relay_wake() -> None:
    """Enqueue one relay run unless one is already on its way."""
    if _suspension.active():
        return
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.set(FLAG_KEY, "1", nx=True, ex=FLAG_TTL_SECONDS)
        # For a run that stays: one nudge is enough, and it goes with the flag.
        pipe.rpush(NUDGE_KEY, "1").ltrim(NUDGE_KEY, -1, -1).expire(NUDGE_KEY, FLAG_TTL_SECONDS)
        if not pipe.execute()[0]:
            return  # a run is already on its way, or staying, and will see this row
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


# Delete the wake-up flag (KEYS[1]) unless it holds the staying run's lock token (KEYS[2]'s value).
_RELEASE_UNLESS_STAYING = """
local flag = redis.call('get', KEYS[1])
if flag and flag == redis.call('get', KEYS[2]) then
    return 0
end
redis.call('del', KEYS[1])
return 1
"""


def outbox_relay_flag_release() -> bool:
    """Release the flag for a run that does not stay; False if the staying run holds it (it drains what comes)."""
    try:
        return bool(_redis().eval(_RELEASE_UNLESS_STAYING, 2, FLAG_KEY, LINGER_LOCK_KEY))
    except redis.RedisError:
        return True  # carry on as a run that clears it; the flag expires by itself


def outbox_relay_flag_take() -> bool:
    """Take the flag for a run that keeps draining; False if a newer wake-up already holds it."""
    try:
        return _flag_set()
    except Exception:
        return True  # keep draining; without Redis the flag means nothing anyway


def outbox_relay_flag_clear() -> None:
    """Release the flag, whoever holds it, so the next commit enqueues a run."""
    try:
        _redis().delete(FLAG_KEY)
    except Exception:
        pass  # the flag expires by itself


def outbox_trigger_reset() -> None:
    """Forget any back-off (between tests; a changed REDIS_URL gets its own client anyway)."""
    _suspension.reset()


class Lingering:
    """A run's hold on the staying role: woken by the commits' nudges instead of by tasks."""

    def __init__(self, lock: Lock, token: str) -> None:
        self._lock = lock
        self._token = token
        self._renewed = time.monotonic()
        # Blocks for up to LINGER_RENEW_SECONDS: a timeout above that, not the fail-fast one.
        self._blocking = shared_fail_fast_client(settings.REDIS_URL, timeout_seconds=LINGER_RENEW_SECONDS + 1.0)
        self._gather_seconds = settings.OUTBOX_RELAY_GATHER_SECONDS

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds` for a nudge; True if one came (a commit of new rows since the last wait).

        The nudges are cleared as one is taken, before the drain that follows
        claims anything: a commit that drain cannot see nudges after it. A
        nudge taken, it first waits OUTBOX_RELAY_GATHER_SECONDS, so the commits
        of that moment go in one drain (one claim, one send, one update)
        rather than one drain each: a commit in the wait nudged after its
        rows committed, so the drain, after the clear, sees them. False also
        when Redis fails or the lock is lost: the run then ends as one that
        does not stay.
        """
        deadline = time.monotonic() + seconds
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now - self._renewed >= LINGER_RENEW_SECONDS and not self._renew():
                    return False
                if self._blocking.blpop([NUDGE_KEY], timeout=min(deadline - now, LINGER_RENEW_SECONDS)):
                    time.sleep(self._gather_seconds)
                    self._blocking.delete(NUDGE_KEY)
                    return True
        except redis.RedisError as error:
            logger.warning("relay stopped staying", extra={"event": "resilience", "error": repr(error)})
            return False

    def _renew(self) -> bool:
        """Keep the lock and the wake-up flag; False if the lock was lost (Redis down, or it expired)."""
        self._renewed = time.monotonic()
        try:
            self._lock.reacquire()
            _redis().set(FLAG_KEY, self._token, ex=FLAG_TTL_SECONDS)
            return True
        except redis.RedisError:  # LockError among them
            return False


@contextmanager
def outbox_relay_linger() -> Iterator[Lingering | None]:
    """Take the staying role and the flag, clearing old nudges; None if another run stays or Redis is down."""
    lock = Lock(_redis(), LINGER_LOCK_KEY, timeout=FLAG_TTL_SECONDS, blocking=False, thread_local=False)
    token = uuid.uuid4().hex
    try:
        if not lock.acquire(token=token):
            yield None
            return
        # Before the run's first claim, the nudges: what came before, it sees.
        _redis().pipeline(transaction=False).set(FLAG_KEY, token, ex=FLAG_TTL_SECONDS).delete(NUDGE_KEY).execute()
    except redis.RedisError:
        yield None
        return
    try:
        yield Lingering(lock, token)
    finally:
        try:
            lock.release()
        except redis.RedisError:  # LockError among them
            pass  # it expires by itself
