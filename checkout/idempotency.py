"""`Idempotency-Key` handling (docs/contract.md "Idempotency-Key"; the IETF httpapi draft and Stripe's behaviour).

The database does the enforcing, not the process:

* a transaction-scoped advisory lock on the key marks a request "in flight":
  a second request with the key cannot take it and answers 409 at once, and
  PostgreSQL drops the lock by itself if the first request's process dies, so
  a crash never leaves a key stuck;
* the outcome is stored in the same transaction as the operation's writes, so
  an order exists if and only if its idempotent response does;
* the unique constraint on the key backs both up.
"""
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from checkout.metrics import IDEMPOTENCY_CLEANUP_DELETED, IDEMPOTENCY_REPLAYS
from checkout.models import IdempotencyRecord
from core.db import delete_in_batches, row_get, row_insert
from core.errors import Conflict, DomainError, InvalidRequest, Unprocessable

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")
# Namespaces our advisory locks so they cannot collide with another feature's.
_LOCK_NAMESPACE = b"idempotency-key:"


@dataclass(frozen=True)
class IdempotentResponse:
    status: int
    body: dict[str, Any]
    replayed: bool


def idempotency_key_validate(key: str | None) -> str:
    if key is None or not key.strip():
        raise InvalidRequest(f"The {HEADER} header is required.", problem_type="idempotency-key-missing")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"The {HEADER} header must be at most {MAX_KEY_LENGTH} characters.",
            problem_type="idempotency-key-too-long",
        )
    if not _PRINTABLE_ASCII.fullmatch(key):
        # The IETF draft makes the key a structured-field string: printable
        # ASCII. Anything else (a NUL cannot even be stored) is refused here.
        raise InvalidRequest(
            f"The {HEADER} header must be printable ASCII characters.", problem_type="idempotency-key-invalid"
        )
    return key


def request_fingerprint(*, method: str, path: str, body: Any) -> str:
    """Hash the request's canonical form: same JSON, any key order or spacing → same hash.

    The canonical form is checked first: a body that cannot be written as
    UTF-8 JSON (a lone surrogate; the API's parser refuses those already) is
    the client's error, never a crash.
    """
    try:
        canonical = json.dumps(
            {"method": method.upper(), "path": path, "body": body},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    except (TypeError, ValueError) as error:  # UnicodeEncodeError is a ValueError
        raise InvalidRequest(
            "The request body cannot be fingerprinted: it is not valid UTF-8 JSON.", problem_type="body-undecodable"
        ) from error
    return hashlib.sha256(canonical).hexdigest()


def _lock_id(key: str) -> int:
    digest = hashlib.sha256(_LOCK_NAMESPACE + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _try_lock(key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_lock_id(key)])
        (acquired,) = cursor.fetchone()
    return bool(acquired)


def _in_flight(key: str) -> Conflict:
    return Conflict(
        "A request with this Idempotency-Key is still being processed; retry later.",
        problem_type="idempotency-key-in-flight",
    )


def idempotent_execute(
    *,
    key: str,
    method: str,
    path: str,
    body: Any,
    operation: Callable[[], tuple[int, dict[str, Any]]],
    error_body: Callable[[DomainError], dict[str, Any]],
) -> IdempotentResponse:
    """Run `operation` once per key; replay its stored outcome afterwards.

    `operation` returns (status, body) or raises a DomainError (a 4xx, stored
    and replayed like a success). Any other exception (a 5xx) stores nothing,
    so a retry runs the operation again.
    """
    fingerprint = request_fingerprint(method=method, path=path, body=body)
    now = timezone.now()
    with transaction.atomic():
        if not _try_lock(key):
            raise _in_flight(key)
        record = row_get(IdempotencyRecord, "key", key)
        if record is not None and record.expires_at > now:
            if record.fingerprint != fingerprint:
                raise Unprocessable(
                    "This Idempotency-Key was already used with a different request.",
                    problem_type="idempotency-key-reused",
                )
            IDEMPOTENCY_REPLAYS.inc()
            return IdempotentResponse(record.response_status, record.response_body, replayed=True)
        if record is not None:
            record.delete()  # expired: the key is free again

        try:
            with transaction.atomic():  # a savepoint: a 4xx undoes the operation's writes only
                status, response_body = operation()
        except DomainError as error:
            status, response_body = error.status_code, error_body(error)
        try:
            # No savepoint: a failed insert is answered by rolling the whole
            # transaction back (the raise below), never by carrying on in it.
            row_insert(
                IdempotencyRecord(
                    key=key,
                    fingerprint=fingerprint,
                    method=method.upper(),
                    path=path,
                    response_status=status,
                    response_body=response_body,
                    expires_at=now + settings.IDEMPOTENCY_KEY_TTL,
                )
            )
        except IntegrityError:
            # The advisory lock makes this unreachable between our own requests;
            # the unique key still refuses a second outcome, and raising here
            # rolls the operation back with it.
            logger.warning("idempotency key stored concurrently", extra={"idempotency_key": key})
            raise _in_flight(key) from None
        return IdempotentResponse(status, response_body, replayed=False)


def idempotency_records_expired_delete(*, batch_size: int) -> int:
    """Delete expired records a batch at a time, each batch its own short transaction."""
    total = delete_in_batches(IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()), batch_size=batch_size)
    if total:
        IDEMPOTENCY_CLEANUP_DELETED.inc(total)
        logger.info("idempotency records expired", extra={"deleted": total})
    return total
