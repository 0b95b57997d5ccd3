"""The outbox relay: publish PENDING rows to Kafka, in order per aggregate.

A batch runs in one transaction that holds its rows' locks from the claim
until their new status is written, so a crash anywhere leaves them PENDING
(at worst sent twice, never lost). Any number of relays may run: each skips
rows another holds (SKIP LOCKED), and publishes an aggregate's rows only as
the unbroken prefix of that aggregate's unpublished rows, so no event ever
overtakes an earlier one of its aggregate, even one waiting for a retry. Rows
held back that way are left out of the claim itself, so they never fill a
batch ahead of rows that can go (see `_CLAIM_SQL`).

Retry level of a producer send: the row. kafka-python retries inside one
bounded send (`kafkaPublisher` time limit); a row that still fails keeps its
`attempts` and `next_attempt_at` (the one backoff, `kafkaPublisher` policy)
and goes FAILED after OUTBOX_MAX_ATTEMPTS (the periodic requeue retries it
later). A row the broker refuses for good (too large) or that cannot be
encoded goes REFUSED at once and waits for an operator: no retry can help
it. The design speaks of Celery workers publishing "with autoretry/backoff";
the retry state lives in the row instead of Celery's `autoretry_for` because
it must outlive a worker crash or a lost broker message (a task retry is a
message in Redis), it is per row, not per batch (one bad row must not resend
the batch), it keeps an aggregate's order (a later row waits behind a
retrying one, which a task retried on its own clock cannot see), and a
thousand retrying rows cost one query, not a thousand delayed messages. The relay task itself is therefore
never retried by Celery: the wake-up and the beat sweep start the next run.

The table stays one table, and the claim never walks what vacuum has not
removed. Publishing a row updates it, which leaves a dead version and a dead
entry in the PENDING index; while any transaction holds an older snapshot (a
REPEATABLE READ report, a pg_dump, a stuck session) vacuum removes none, and a
claim that starts its index scan at id 0 steps over every one of them, ever
more per batch. So a batch claims after the highest id the previous batch
locked, and a run starts after a floor (outbox/floor.py): the dead entries are
behind every scan, the blocking test probes a partial index of the few rows
that can hold an order back, and the prefix test probes each claimed order's
own rows. Rotated partitions truncated when drained (pgque's design) would
also remove the dead tuples themselves, but TRUNCATE needs an ACCESS EXCLUSIVE
lock that a reader of the outbox (the held transaction itself, if it read it)
blocks while checkouts' inserts queue behind it; it would drop PUBLISHED rows
that the retention, the admin, republishing and reconciliation read, unless
they moved to a second table that every one of those would then read; and a
partitioned table cannot keep `event_id` unique. The dead tuples a held
snapshot keeps are bounded by the rows published while it is held (one
version per row: the lock writes no new one, the single UPDATE does), and
vacuum takes them once it ends.
"""
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.planted import DROP_OUTBOX_ROW, planted
from messaging.kafka.producer import OutgoingMessage, SendResult, SendStatus, event_producer_send
from outbox.metrics import ATTEMPT_ERRORS, BREAKER_SKIPS, COMMIT_TO_PUBLISH, FAILED, PUBLISHED
from outbox.models import OutboxEvent, OutboxStatus
from resilience.breaker import CircuitBreaker, CircuitOpenError, State
from resilience.policies import breaker_for, policy
from resilience.retry import retry_delay

logger = logging.getLogger(__name__)

POLICY = "kafkaPublisher"
TRIAL_BATCH_SIZE = 10


@dataclass
class BatchReport:
    claimed: int = 0
    published: int = 0
    retrying: int = 0
    failed: int = 0
    held_back: int = 0
    # Locked, but an earlier row of the same aggregate is another relay's:
    # left for it (that relay publishes them once the earlier row is out).
    deferred: int = 0
    breaker_open: bool = False
    last_id: int = 0  # the highest id locked: where the drain's next batch starts
    # Locked fewer rows than the batch size: nothing due lay past them (as of its snapshot).
    reached_end: bool = False
    published_ids: list[int] = field(default_factory=list)

    def add(self, batch: "BatchReport") -> None:
        """Count a batch into a drain's total (the breaker's state is the latest batch's)."""
        self.claimed += batch.claimed
        self.published += batch.published
        self.retrying += batch.retrying
        self.failed += batch.failed
        self.held_back += batch.held_back
        self.deferred += batch.deferred
        self.breaker_open = batch.breaker_open


@dataclass
class ClaimedRow:
    """What the relay needs of a locked row: lighter than a model instance, at a thousand a batch."""

    id: int
    aggregate_type: str
    aggregate_id: str
    topic: str
    key: str
    event_type: str
    headers_text: str
    payload_text: str
    attempts: int
    created_at: datetime
    status: str = OutboxStatus.PENDING
    next_attempt_at: datetime | None = None
    last_error: str = ""


# One statement claims a batch: it locks due PENDING rows, in id order, that
# nothing earlier of their aggregate holds back, and returns those that are
# the unbroken prefix of their aggregate's unpublished rows. The payload
# comes as its stored JSON text: the relay sends it as is instead of
# decoding and re-encoding every row.
#
# `candidate`: a row is not claimed if an earlier row of its aggregate is
# unpublished for a while yet: FAILED, REFUSED, or PENDING and waiting for
# its retry. Such a row could not be published and would only take a place
# in the batch; enough of them (ten orders behind a failed event) filled the
# whole half-open trial, so the relay never asked the breaker and never
# published anything again. The test is written with `outbox_blocking_idx`'s
# condition so it is a probe of that small index, not a scan of the outbox.
# An earlier row that is PENDING and due is no obstacle: it comes first in
# this very batch, unless another relay holds it, which `elsewhere` sees.
#
# `elsewhere`: the first unpublished row of each claimed aggregate that this
# claim does not hold (another relay has it, or it lies before `after`): the
# aggregate's claimed rows after it come back `deferred` (no payload) and stay
# locked but unsent until the transaction ends, so rows only ever go out as
# their aggregate's prefix. The drain counts them, and goes on past them.
#
# `elsewhere` is MATERIALIZED, worked out once per claim. Left to the planner
# it was inlined into the join with `locked`, and when the statistics still
# described a small outbox (the backlog of an outage, written faster than
# autovacuum analyses it) the planner estimated one locked row and ran
# `elsewhere`, a probe per claimed order, once per locked row: 300,000 index
# probes and about a second per claim of 1,000 rows, against 9 ms
# materialized (bench/outbox_backlog.py drained at about 1,200 rows/s).
#
# `after` (keyset): a drain claims the rows after the last one it claimed,
# so a batch never steps over the index entries of rows published before it;
# those are dead tuples that vacuum cannot remove while any transaction holds
# an older snapshot (outbox/relay.py's docstring).
_CLAIM_SQL = """
    WITH locked AS (
        SELECT id, aggregate_type, aggregate_id, topic, key, event_type, headers, payload, attempts, created_at
        FROM {table} AS candidate
        WHERE status = 'PENDING' AND id > %(after)s AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
          AND NOT EXISTS (
              SELECT 1 FROM {table} AS earlier
              WHERE earlier.aggregate_type = candidate.aggregate_type
                AND earlier.aggregate_id = candidate.aggregate_id
                AND earlier.id < candidate.id
                AND earlier.status <> 'PUBLISHED'
                AND (earlier.status <> 'PENDING' OR earlier.next_attempt_at IS NOT NULL)
                AND NOT (earlier.status = 'PENDING' AND earlier.next_attempt_at <= %(now)s)
          )
        ORDER BY id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ),
    elsewhere AS MATERIALIZED (
        SELECT claimed.aggregate_type, claimed.aggregate_id, first.id AS first_id
        FROM (SELECT aggregate_type, aggregate_id, max(id) AS last_id FROM locked GROUP BY 1, 2) AS claimed
        CROSS JOIN LATERAL (
            SELECT other.id FROM {table} AS other
            WHERE other.aggregate_type = claimed.aggregate_type AND other.aggregate_id = claimed.aggregate_id
              AND other.id < claimed.last_id AND other.status <> 'PUBLISHED'
              AND other.id NOT IN (SELECT id FROM locked)
            ORDER BY other.id
            LIMIT 1
        ) AS first
    )
    SELECT locked.id, locked.aggregate_type, locked.aggregate_id, topic, key, event_type,
           CASE WHEN deferred THEN NULL ELSE headers::text END, CASE WHEN deferred THEN NULL ELSE payload::text END,
           attempts, created_at, deferred
    FROM (
        SELECT locked.*, coalesce(locked.id > elsewhere.first_id, false) AS deferred
        FROM locked
        LEFT JOIN elsewhere
          ON elsewhere.aggregate_type = locked.aggregate_type AND elsewhere.aggregate_id = locked.aggregate_id
    ) AS locked
    ORDER BY locked.id
"""


def _claim(batch_size: int, now: datetime, after: int = 0) -> tuple[list[ClaimedRow], int, int]:
    """Lock up to `batch_size` due PENDING rows after id `after`.

    Returns the rows their aggregates' order lets go, how many locked rows
    wait behind an earlier row this claim does not hold (deferred), and the
    highest id locked (0 if none).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL.format(table=OutboxEvent._meta.db_table), {"now": now, "limit": batch_size, "after": after}
        )
        locked = cursor.fetchall()
    rows = [ClaimedRow(*values[:-1]) for values in locked if not values[-1]]
    return rows, len(locked) - len(rows), (locked[-1][0] if locked else 0)


def _message(row: ClaimedRow) -> OutgoingMessage:
    headers = json.loads(row.headers_text)
    return OutgoingMessage(
        topic=row.topic,
        key=row.key.encode(),
        value=row.payload_text.encode(),
        headers=tuple((name, str(value).encode()) for name, value in headers.items()),
    )


def _encode(rows: list[ClaimedRow]) -> tuple[list[ClaimedRow], list[OutgoingMessage], list[tuple[ClaimedRow, SendResult]]]:
    sendable, messages, unencodable = [], [], []
    for row in rows:
        try:
            messages.append(_message(row))
            sendable.append(row)
        except (AttributeError, TypeError, ValueError, UnicodeError) as error:  # headers not a flat mapping
            unencodable.append((row, SendResult(SendStatus.PERMANENT, repr(error), "SerializationError")))
    return sendable, messages, unencodable


def _record_published(rows: list[ClaimedRow], now: datetime) -> None:
    by_topic: dict[str, list[ClaimedRow]] = defaultdict(list)
    for row in rows:
        by_topic[row.topic].append(row)
    for topic, topic_rows in by_topic.items():
        PUBLISHED.labels(topic).inc(len(topic_rows))
        histogram = COMMIT_TO_PUBLISH.labels(topic)
        for row in topic_rows:
            histogram.observe((now - row.created_at).total_seconds())


def _apply_failure(row: ClaimedRow, result: SendResult, now: datetime, report: BatchReport, max_attempts: int) -> None:
    row.attempts += 1
    row.last_error = f"{result.reason}: {result.error}"[:2000]
    ATTEMPT_ERRORS.labels(row.topic, result.reason).inc()
    if result.status == SendStatus.PERMANENT or row.attempts >= max_attempts:
        permanent = result.status == SendStatus.PERMANENT
        row.status = OutboxStatus.REFUSED if permanent else OutboxStatus.FAILED
        row.next_attempt_at = None
        report.failed += 1
        reason = result.reason if permanent else "retries-exhausted"
        FAILED.labels(row.topic, reason).inc()
        logger.error(
            "outbox row refused" if permanent else "outbox row failed",
            extra={
                "event": "resilience",
                "outbox_id": row.id,
                "status": row.status,
                "event_type": row.event_type,
                "aggregate_id": row.aggregate_id,
                "attempts": row.attempts,
                "reason": reason,
                "error": result.error,
            },
        )
    else:
        retry = policy(POLICY).retry
        row.next_attempt_at = now + timedelta(seconds=retry_delay(row.attempts, retry))
        report.retrying += 1


def outbox_batch_publish(*, batch_size: int, breaker: CircuitBreaker | None = None, after: int = 0) -> BatchReport:
    """Claim one batch (rows after id `after`), publish it, record each row's outcome; all in one transaction."""
    breaker = breaker or breaker_for(POLICY)
    report = BatchReport()
    max_attempts = settings.OUTBOX_MAX_ATTEMPTS
    if breaker.state() != State.CLOSED:
        # If it lets this batch through, the batch is a trial: it risks only a
        # few rows' attempts on a broker that may still be down.
        batch_size = min(batch_size, TRIAL_BATCH_SIZE)
    with transaction.atomic():
        rows, report.deferred, report.last_id = _claim(batch_size, timezone.now(), after)
        report.claimed = len(rows)
        report.reached_end = report.claimed + report.deferred < batch_size
        if not rows:
            return report
        # This transaction's commit need not wait for its WAL to reach the
        # disk: if PostgreSQL crashes and loses it, its rows are PENDING
        # again and go out a second time, which every consumer absorbs
        # (processed events), as it does after a relay crash. At one small
        # batch per checkout, the flush was a WAL write and fsync each.
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
        try:
            # Asked only once there is work: an empty sweep must not count as
            # a successful call (it would close a half-open breaker untested).
            permit = breaker.acquire()
        except CircuitOpenError:
            report.breaker_open = True
            BREAKER_SKIPS.inc()
            return report  # rows untouched: an open breaker burns no attempts
        sendable, messages, outcomes = _encode(rows)
        if planted(DROP_OUTBOX_ROW) and sendable:
            # A test-only defect: the first row counts as sent, and never is.
            outcomes.append((sendable.pop(0), SendResult(SendStatus.ACKED)))
            messages.pop(0)
        outcomes += list(zip(sendable, event_producer_send(messages)))

        # The broker's health is what the breaker judges: a permanent error
        # (a bad message) was still an answer from a working broker.
        transient = sum(1 for _, result in outcomes if result.status == SendStatus.TRANSIENT)
        answered = sum(1 for _, result in outcomes if result.status in (SendStatus.ACKED, SendStatus.PERMANENT))
        breaker.record_outcomes(permit, successes=answered, failures=transient)

        now = timezone.now()
        published = [row for row, result in outcomes if result.status == SendStatus.ACKED]
        failed = [(row, result) for row, result in outcomes if result.status in (SendStatus.TRANSIENT, SendStatus.PERMANENT)]
        report.published = len(published)
        report.published_ids = [row.id for row in published]
        report.held_back = sum(1 for _, result in outcomes if result.status == SendStatus.NOT_SENT)
        for row, result in failed:
            _apply_failure(row, result, now, report, max_attempts)
        # Published rows all take the same values: one statement, its ids one
        # array parameter (Django's `id__in` compiled a thousand placeholders
        # per batch: a twentieth of the relay's CPU in a drain). Rows that
        # failed (few) carry their own attempts and next time.
        if report.published_ids:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {OutboxEvent._meta.db_table} SET status = %s, published_at = %s, last_error = '',"
                    " next_attempt_at = NULL WHERE id = ANY(%s)",
                    [OutboxStatus.PUBLISHED.value, now, report.published_ids],
                )
        OutboxEvent.objects.bulk_update(
            [
                OutboxEvent(
                    id=row.id,
                    status=row.status,
                    attempts=row.attempts,
                    next_attempt_at=row.next_attempt_at,
                    last_error=row.last_error,
                )
                for row, _ in failed
            ],
            ["status", "attempts", "next_attempt_at", "last_error"],
        )
        _record_published(published, now)
    return report


def outbox_drain(
    *, batch_size: int, time_budget_seconds: float, max_batches: int = 1000, start: int = 0, rescan: bool = True
) -> BatchReport:
    """Publish batches until the outbox has no due work, the breaker opens or time runs out.

    The first batch claims rows after id `start` (0, or the process's floor:
    outbox/floor.py); each next one after the highest id the previous one
    locked (keyset), so it never walks the published rows before it, and goes
    on past rows deferred to another relay. At the end of the table a new
    pass from `start` picks up what the keyset left behind (a row that came
    due, a row another relay held and gave back, a row committed late); the
    drain ends when a whole pass publishes nothing.

    Without `rescan` the drain ends at the end of its first pass: for a
    caller that drains again from `start` anyway (outbox/run.py's run that
    stays), to which the new pass would be one more empty claim per drain.
    """
    deadline = time.monotonic() + time_budget_seconds
    total = BatchReport()
    after, pass_published = start, 0
    for _ in range(max_batches):
        report = outbox_batch_publish(batch_size=batch_size, after=after)
        total.add(report)
        pass_published += report.published
        if report.breaker_open or time.monotonic() >= deadline:
            break
        if report.published == 0 and (report.retrying or report.failed):
            break  # the broker is failing these rows: their backoff, the breaker and the next run decide
        if report.reached_end:  # the end of this pass: no empty claim needed to find it
            if pass_published == 0 or not rescan:
                break
            after, pass_published = start, 0
            continue
        after = report.last_id
    return total
