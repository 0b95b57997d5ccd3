"""Where this process's relay starts its claims: past the rows already published.

Every published row leaves a dead entry in the PENDING index
(`outbox_pending_idx`) until vacuum removes it, and vacuum can remove none that
some transaction's snapshot may still see: a REPEATABLE READ transaction held
open for ten minutes keeps every row published in those ten minutes on the
path of a claim that starts from id 0, and each claim would step over all of
them. So a relay run starts at a floor: an id below which no row was PENDING
SETTLE_SECONDS ago (by then a transaction that wrote a lower id and had not yet
committed has usually committed, and its rows gone out), and within a run
each batch starts after the last row claimed (`outbox.relay.outbox_drain`).
Usually, not always: a transaction open for longer (a bulk write of 100,000
rows took that on a slow machine) commits rows below a floor noted while it
was open, and every run after started above them, until a full pass. So the
floor moves up only as far as no row is PENDING now between it and where it
goes: one range of the pending index, at most once a second. A row that
comes back to PENDING below the floor (the requeue job, an operator's
requeue, a republish) is found by the pass from id 0 that each process still
makes every FULL_PASS_SECONDS: the floor only ever delays a row, it never
loses one. Per process and in memory: nothing to write, so no dead tuples of
its own, and a new process starts with a full pass.
"""
import time
from collections import deque

from django.db import connection

from outbox.models import OutboxEvent

SETTLE_SECONDS = 10.0
FULL_PASS_SECONDS = 60.0
NOTE_EVERY_SECONDS = 1.0

_candidates: deque[tuple[float, int]] = deque()  # (monotonic time, floor seen then), oldest first
_floor = 0
_last_full_pass = float("-inf")


def outbox_claim_floor() -> int:
    """The id a relay run claims after: 0 when this process's full pass is due, else the settled floor."""
    global _floor, _last_full_pass
    now = time.monotonic()
    settled = None
    while _candidates and _candidates[0][0] <= now - SETTLE_SECONDS:
        settled = _candidates.popleft()[1]
    if settled is not None:
        _floor = settled if settled <= _floor else _first_pending_below(_floor, settled)
    if now - _last_full_pass >= FULL_PASS_SECONDS:
        _last_full_pass = now
        return 0
    return _floor


def _first_pending_below(low: int, high: int) -> int:
    """`high`, or just below the first row above `low` that is PENDING now (committed since `high` was noted)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT coalesce(min(id) - 1, %s) FROM {OutboxEvent._meta.db_table}"
            " WHERE status = 'PENDING' AND id > %s AND id <= %s",
            [high, low, high],
        )
        return cursor.fetchone()[0]


def outbox_claim_floor_note(start: int) -> None:
    """After a run found nothing to claim past `start`: note where PENDING rows begin now (the floor once settled)."""
    now = time.monotonic()
    if _candidates and now - _candidates[-1][0] < NOTE_EVERY_SECONDS:
        return
    table = OutboxEvent._meta.db_table
    with connection.cursor() as cursor:
        # Both walk only from `start` (the pending index) or the newest rows (the primary key, backwards).
        cursor.execute(
            f"SELECT coalesce((SELECT min(id) - 1 FROM {table} WHERE status = 'PENDING' AND id > %s),"
            f" (SELECT max(id) FROM {table}), 0)",
            [start],
        )
        _candidates.append((now, cursor.fetchone()[0]))


def outbox_claim_floor_reset() -> None:
    """Forget the floor: the next run makes a full pass (between tests)."""
    global _floor, _last_full_pass
    _candidates.clear()
    _floor = 0
    _last_full_pass = float("-inf")
