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
was open, and every run after started above them, until a full pass. So a
note settles only once every transaction that had written and was open when
it was made has ended (pg_stat_activity), and the floor moves up only as far
as no row is PENDING now between it and the note: two queries, at most once
a second. A row that comes back to PENDING below the floor (the requeue job,
an operator's requeue, a republish) is found by the pass from id 0 that each
process still makes every FULL_PASS_SECONDS: the floor only ever delays a
row, it never loses one. Per process and in memory: nothing to write, so no
dead tuples of its own, and a new process starts with a full pass.
"""
import time
from collections import deque
from datetime import datetime

from django.db import connection

from outbox.models import OutboxEvent

SETTLE_SECONDS = 10.0
FULL_PASS_SECONDS = 60.0
NOTE_EVERY_SECONDS = 1.0

# (monotonic time, floor seen then, the database's clock then), oldest first
_candidates: deque[tuple[float, int, datetime]] = deque()
_floor = 0
_last_full_pass = float("-inf")
# When the floor last tried to move up: a note held back by a long transaction is asked about once a
# NOTE_EVERY_SECONDS, not on every run and nudge while that transaction stays open.
_last_move_up = float("-inf")


def outbox_claim_floor() -> int:
    """The id a relay run claims after: 0 when this process's full pass is due, else the settled floor."""
    global _last_full_pass, _last_move_up
    now = time.monotonic()
    if _candidates and _candidates[0][0] <= now - SETTLE_SECONDS and now - _last_move_up >= NOTE_EVERY_SECONDS:
        _last_move_up = now
        _floor_move_up(now)
    if now - _last_full_pass >= FULL_PASS_SECONDS:
        _last_full_pass = now
        return 0
    return _floor


def _floor_move_up(now: float) -> None:
    """Take the newest settled note that no transaction still open may have written rows below, then check it."""
    global _floor
    with connection.cursor() as cursor:
        # Another session's oldest open transaction that has written anything
        # (a reader, such as a held REPEATABLE READ snapshot, has no xid). Its
        # rows are invisible until it commits, and may lie below any note made
        # since it began. Sessions of other database users show no xid
        # without pg_read_all_stats: the range check below still applies.
        cursor.execute(
            "SELECT min(xact_start) FROM pg_stat_activity"
            " WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
        )
        oldest_writer = cursor.fetchone()[0]
    settled = None
    while _candidates and _candidates[0][0] <= now - SETTLE_SECONDS:
        if oldest_writer is not None and oldest_writer <= _candidates[0][2]:
            break  # noted while that transaction was open: wait until it ends
        settled = _candidates.popleft()[1]
    if settled is not None:
        _floor = settled if settled <= _floor else _first_pending_below(_floor, settled)


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
            f" (SELECT max(id) FROM {table}), 0), statement_timestamp()",
            [start],
        )
        floor, noted_at = cursor.fetchone()
        _candidates.append((now, floor, noted_at))


def outbox_claim_floor_reset() -> None:
    """Forget the floor: the next run makes a full pass (between tests)."""
    global _floor, _last_full_pass, _last_move_up
    _candidates.clear()
    _floor = 0
    _last_full_pass = _last_move_up = float("-inf")
