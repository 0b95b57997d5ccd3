"""The provider's ledger: charges and refunds in a sqlite file of its own, idempotent by key.

One connection shared by the server's threads behind a lock: sqlite
serialises writers anyway, and every operation here is a few rows, so a
lock costs less than a connection per thread and keeps each check-then-insert
atomic. WAL so a reader (a test's sqlite3 shell, a crash) never blocks it.
"""
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL,
    amount_refunded INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    response_code INTEGER NOT NULL,
    response_body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_status_seq ON charges (status, seq);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    charge TEXT NOT NULL,
    amount INTEGER NOT NULL,
    created REAL NOT NULL,
    response_code INTEGER NOT NULL,
    response_body TEXT NOT NULL
);
"""
CHARGE_COLUMNS = "id, idempotency_key, amount, currency, status, metadata, amount_refunded, created"
SEED_BATCH = 10_000


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored for a key: replayed as it was for the same key."""

    status: int
    body: dict[str, Any]


def error_body(error_type: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": error_type, "code": code, "message": message, **extra}}


def _charge_object(row: sqlite3.Row | tuple) -> dict[str, Any]:
    charge_id, key, amount, currency, status, metadata, amount_refunded, created = row
    charge = {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "currency": currency,
        "status": status,
        "idempotency_key": key,
        "metadata": json.loads(metadata),
        "refunded": amount_refunded >= amount and status == "succeeded",
        "amount_refunded": amount_refunded,
        "created": created,
    }
    if status == "failed":
        charge["failure_code"] = "card_declined"
    return charge


class Store:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def charge_stored(self, idempotency_key: str) -> tuple[int, Answer] | None:
        """The amount and the stored answer of the charge made under the key, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT amount, response_code, response_body FROM charges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        if row is None:
            return None
        return row[0], Answer(row[1], json.loads(row[2]))

    def charge_create(
        self, *, idempotency_key: str, amount: int, currency: str, metadata: dict[str, Any], approved: bool
    ) -> tuple[int, Answer]:
        """Store a charge under the key and its answer; if the key has one already, return that one."""
        charge_id = "ch_" + secrets.token_hex(12)
        status = "succeeded" if approved else "failed"
        created = time.time()
        charge = _charge_object((charge_id, idempotency_key, amount, currency, status, json.dumps(metadata), 0, created))
        if approved:
            answer = Answer(200, charge)
        else:
            answer = Answer(402, error_body("card_error", "card_declined", "Your card was declined.", charge=charge_id))
        with self._lock:
            existing = self._db.execute(
                "SELECT amount, response_code, response_body FROM charges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if existing is not None:
                return existing[0], Answer(existing[1], json.loads(existing[2]))
            self._db.execute(
                "INSERT INTO charges (id, idempotency_key, amount, currency, status, metadata, created, response_code,"
                " response_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (charge_id, idempotency_key, amount, currency, status, json.dumps(metadata), created,
                 answer.status, json.dumps(answer.body)),
            )  # fmt: skip
        return amount, answer

    def charge_by_key(self, idempotency_key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {CHARGE_COLUMNS} FROM charges WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
        return None if row is None else _charge_object(row)

    def charges_after(self, *, starting_after: str | None, limit: int, include_failed: bool) -> tuple[list[dict], bool] | None:
        """Charges in creation order after the given one (None: from the first); None if that charge does not exist."""
        with self._lock:
            after = 0
            if starting_after:
                found = self._db.execute("SELECT seq FROM charges WHERE id = ?", (starting_after,)).fetchone()
                if found is None:
                    return None
                after = found[0]
            status_filter = "" if include_failed else "AND status = 'succeeded'"
            rows = self._db.execute(
                f"SELECT {CHARGE_COLUMNS} FROM charges WHERE seq > ? {status_filter} ORDER BY seq LIMIT ?",
                (after, limit + 1),
            ).fetchall()
        return [_charge_object(row) for row in rows[:limit]], len(rows) > limit

    def refund_create(self, *, idempotency_key: str, charge_id: str) -> Answer:
        """Refund the whole charge once; the same refund key returns its first answer."""
        with self._lock:
            stored = self._db.execute(
                "SELECT response_code, response_body FROM refunds WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if stored is not None:
                return Answer(stored[0], json.loads(stored[1]))
            charge = self._db.execute(
                "SELECT amount, amount_refunded, status FROM charges WHERE id = ?", (charge_id,)
            ).fetchone()
            if charge is None:
                return Answer(404, error_body("invalid_request_error", "resource_missing", f"No such charge: {charge_id}"))
            amount, amount_refunded, status = charge
            if status != "succeeded":
                return Answer(400, error_body("invalid_request_error", "charge_not_succeeded", "Only succeeded charges can be refunded."))
            if amount_refunded >= amount:
                return Answer(400, error_body("invalid_request_error", "charge_already_refunded", f"Charge {charge_id} has already been refunded."))
            refund = {"id": "re_" + secrets.token_hex(12), "object": "refund", "charge": charge_id, "amount": amount, "status": "succeeded"}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("UPDATE charges SET amount_refunded = amount WHERE id = ?", (charge_id,))
                self._db.execute(
                    "INSERT INTO refunds (id, idempotency_key, charge, amount, created, response_code, response_body)"
                    " VALUES (?, ?, ?, ?, ?, 200, ?)",
                    (refund["id"], idempotency_key, charge_id, amount, time.time(), json.dumps(refund)),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Answer(200, refund)

    def seed(self, *, count: int, amount: int) -> int:
        """Insert `count` succeeded charges under random keys, in batches; return how many there are now."""
        done = 0
        while done < count:
            batch = min(SEED_BATCH, count - done)
            now = time.time()
            rows = []
            for _ in range(batch):
                charge_id, key = "ch_" + secrets.token_hex(12), "seed-" + secrets.token_hex(12)
                body = _charge_object((charge_id, key, amount, "usd", "succeeded", "{}", 0, now))
                rows.append((charge_id, key, amount, "usd", "succeeded", "{}", now, 200, json.dumps(body)))
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT INTO charges (id, idempotency_key, amount, currency, status, metadata, created,"
                    " response_code, response_body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._db.execute("COMMIT")
            done += batch
        with self._lock:
            return self._db.execute("SELECT count(*) FROM charges").fetchone()[0]
