"""The payment gateway and the `paymentService` policy around it.

`PaymentGateway` is what order management calls; `MockPaymentGateway` is the
implementation until a real provider (a Stripe-style HTTP client) is added.
Its success rate, latency and failure kind come from the run-time switch
(orders/payment_faults.py) over the `PAYMENT_MOCK_*` settings, so tests and
drills can inject faults into a running platform. Callers go through
`payment_charge` and `payment_refund`, which add the `paymentService` policy (docs/contract.md
"Resilience policies"): retry
only transient errors, a time limit per call, and the breaker shared by
every process.

Retry levels: a transient gateway error (timeout, connection, the time limit)
is retried here and only here, `paymentService.retry.attempts` times with the
one backoff (`resilience.backoff`). Once they are spent the payment fails and
the order with it; the caller never retries a payment again, so one charge is
never retried at two levels. A database error inside a gateway call is not
the gateway's failure: it propagates (the consumer waits the database out).
"""
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeVar

from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import F
from django.utils import timezone

from core.db import ThreadConnections
from orders.models import MockGatewayCharge
from orders.payment_faults import PaymentFaults, payment_faults_current
from payments.metrics import PAYMENT_ATTEMPTS
from resilience.breaker import CircuitOpenError
from resilience.policies import breaker_for, policy
from resilience.retry import retrying
from resilience.timeout import TimeLimitExceeded, call_with_time_limit

logger = logging.getLogger(__name__)

POLICY = "paymentService"

T = TypeVar("T")


class PaymentError(Exception):
    """The gateway did not answer usefully."""


class PaymentTimeout(PaymentError):
    pass


class PaymentConnectionError(PaymentError):
    pass


TRANSIENT_ERRORS = (PaymentTimeout, PaymentConnectionError, TimeLimitExceeded, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    external_transaction_id: str | None = None
    decline_reason: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refunded: bool
    refund_id: str | None = None
    # The refunded charge's own reference.
    charge_id: str | None = None


@dataclass(frozen=True)
class GatewayCharge:
    """A successful charge as the provider lists it."""

    idempotency_key: str
    amount: Decimal
    external_transaction_id: str | None
    created_at: datetime
    refunded: bool


class PaymentGateway(Protocol):
    def charge(self, *, idempotency_key: str, amount: Decimal, timeout_seconds: float) -> ChargeResult:
        """Charge once per idempotency key; a repeated key returns the first answer."""

    def refund(self, *, idempotency_key: str, timeout_seconds: float) -> RefundResult:
        """Give back the charge made under the key, once; a repeated refund returns the first answer."""

    def charges(self, *, created_after: datetime, created_before: datetime) -> list[GatewayCharge]:
        """List the successful charges made in the window, refunded or not."""


# The connections the mock's ledger keeps on the time limit's threads, so
# they can be closed from elsewhere (see mock_gateway_connections_close).
_provider_connections = ThreadConnections()


@contextmanager
def _provider_connection() -> Iterator[None]:
    """Run the mock provider's ledger work on this thread's own connection.

    The gateway is called on the time limit's thread, whose connection is
    never part of the caller's transaction (the provider's ledger is its
    own). The connection is kept for the next call, as a real client keeps
    its HTTP connection, and replaced only when broken or past
    DATABASE_CONN_MAX_AGE.
    """
    if not connection.in_atomic_block:
        close_old_connections()
    _provider_connections.hold()
    try:
        yield
    finally:
        if not connection.in_atomic_block:
            close_old_connections()


def mock_gateway_connections_close() -> None:
    """Close the connections the mock keeps on other threads (while no gateway call is running)."""
    _provider_connections.close_all()


class MockPaymentGateway:
    """The provider stand-in: its behaviour is read per call from `faults`."""

    def __init__(self, *, faults: Callable[[], PaymentFaults] = payment_faults_current) -> None:
        self.faults = faults

    def charge(self, *, idempotency_key: str, amount: Decimal, timeout_seconds: float) -> ChargeResult:
        faults = self._wait(self.faults(), timeout_seconds)
        with _provider_connection():
            previous = MockGatewayCharge.objects.filter(idempotency_key=idempotency_key).first()
            if previous is not None:
                return self._result(previous)
            if random.random() >= faults.success_rate:
                self._raise_transient(faults)
                return self._record(idempotency_key, amount, approved=False, decline_reason="card declined")
            return self._record(idempotency_key, amount, approved=True, external_transaction_id=_reference("mock_", idempotency_key))

    def refund(self, *, idempotency_key: str, timeout_seconds: float) -> RefundResult:
        faults = self._wait(self.faults(), timeout_seconds)
        if random.random() >= faults.success_rate:
            self._raise_transient(faults)  # a refund is never "declined"
        with _provider_connection():
            charges = MockGatewayCharge.objects.filter(idempotency_key=idempotency_key)
            charges.update(refund_requests=F("refund_requests") + 1)
            # Conditional: of any number of refunds of one charge, only the first gives money back.
            charges.filter(approved=True, refunded_at__isnull=True).update(
                refunded_at=timezone.now(), refund_id=_reference("mock_re_", idempotency_key)
            )
            charge = charges.first()
        if charge is None or not charge.approved:
            return RefundResult(refunded=False)  # no successful charge under the key
        return RefundResult(refunded=True, refund_id=charge.refund_id, charge_id=charge.external_transaction_id)

    def charges(self, *, created_after: datetime, created_before: datetime) -> list[GatewayCharge]:
        with _provider_connection():
            rows = list(
                MockGatewayCharge.objects.filter(
                    approved=True, created_at__gt=created_after, created_at__lte=created_before
                ).order_by("created_at")
            )
        return [
            GatewayCharge(
                idempotency_key=row.idempotency_key,
                amount=row.amount,
                external_transaction_id=row.external_transaction_id,
                created_at=row.created_at,
                refunded=row.refunded_at is not None,
            )
            for row in rows
        ]

    @staticmethod
    def _wait(faults: PaymentFaults, timeout_seconds: float) -> PaymentFaults:
        # Like an HTTP client with a timeout: wait at most that long.
        time.sleep(min(faults.latency_seconds, timeout_seconds))
        if faults.latency_seconds > timeout_seconds:
            raise PaymentTimeout(f"no answer from the payment provider within {timeout_seconds:.1f}s")
        return faults

    @staticmethod
    def _raise_transient(faults: PaymentFaults) -> None:
        if faults.failure_kind == "timeout":
            raise PaymentTimeout("the payment provider timed out")
        if faults.failure_kind == "connection":
            raise PaymentConnectionError("connection to the payment provider refused")

    def _record(self, idempotency_key: str, amount: Decimal, **fields) -> ChargeResult:
        try:
            with transaction.atomic():
                charge = MockGatewayCharge.objects.create(idempotency_key=idempotency_key, amount=amount, **fields)
        except IntegrityError:  # the same key charged concurrently: the first answer stands
            charge = MockGatewayCharge.objects.get(idempotency_key=idempotency_key)
        return self._result(charge)

    @staticmethod
    def _result(charge: MockGatewayCharge) -> ChargeResult:
        return ChargeResult(
            approved=charge.approved,
            external_transaction_id=charge.external_transaction_id,
            decline_reason=charge.decline_reason,
        )


def _reference(prefix: str, idempotency_key: str) -> str:
    return prefix + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def payment_gateway() -> PaymentGateway:
    return MockPaymentGateway()


class _PolicyCall:
    """One gateway operation under `paymentService`: breaker, time limit, retries of transient errors."""

    def __init__(self, *, idempotency_key: str) -> None:
        self.idempotency_key = idempotency_key
        self.attempts = 0

    def run(self, call: Callable[[float], T]) -> T:
        """Return the gateway's answer; raise CircuitOpenError, or the last transient error once retries are spent."""
        rules = policy(POLICY)
        breaker = breaker_for(POLICY)

        def attempt() -> T:
            permit = breaker.acquire()  # CircuitOpenError: fail fast, the gateway is not called
            self.attempts += 1
            started = time.monotonic()
            try:
                result = call_with_time_limit(lambda: call(rules.timeout_seconds), seconds=rules.timeout_seconds)
            except TRANSIENT_ERRORS as error:
                breaker.record_failure(permit)
                PAYMENT_ATTEMPTS.labels("transient_error").inc()
                logger.warning(
                    "payment attempt failed",
                    extra={
                        "event": "resilience",
                        "attempt": self.attempts,
                        "error": repr(error),
                        "idempotency_key": self.idempotency_key,
                    },
                )
                raise
            breaker.record_success(permit, duration=time.monotonic() - started)
            return result

        for retry_state in retrying(rules.retry, retry_on=lambda error: isinstance(error, TRANSIENT_ERRORS)):
            with retry_state:
                result = attempt()
        return result


def _unavailable(error: CircuitOpenError) -> str:
    return f"payment service unavailable (circuit open, retry in {error.retry_after:.0f}s)"


@dataclass(frozen=True)
class PaymentOutcome:
    approved: bool
    attempts: int
    external_transaction_id: str | None = None
    failure_reason: str | None = None


def payment_charge(*, idempotency_key: str, amount: Decimal) -> PaymentOutcome:
    """Charge through the `paymentService` policy; never raises for a payment problem."""
    gateway = payment_gateway()
    call = _PolicyCall(idempotency_key=idempotency_key)
    try:
        result = call.run(
            lambda timeout: gateway.charge(idempotency_key=idempotency_key, amount=amount, timeout_seconds=timeout)
        )
    except CircuitOpenError as error:
        PAYMENT_ATTEMPTS.labels("circuit_open").inc()
        return PaymentOutcome(approved=False, attempts=call.attempts, failure_reason=_unavailable(error))
    except TRANSIENT_ERRORS as error:
        reason = f"payment gateway unreachable after {call.attempts} attempt(s): {error}"
        logger.error("payment gave up", extra={"event": "resilience", "attempts": call.attempts, "reason": reason})
        return PaymentOutcome(approved=False, attempts=call.attempts, failure_reason=reason)
    PAYMENT_ATTEMPTS.labels("approved" if result.approved else "declined").inc()
    if result.approved:
        return PaymentOutcome(approved=True, attempts=call.attempts, external_transaction_id=result.external_transaction_id)
    return PaymentOutcome(approved=False, attempts=call.attempts, failure_reason=result.decline_reason or "declined")


@dataclass(frozen=True)
class RefundOutcome:
    refunded: bool
    attempts: int
    refund_id: str | None = None
    charge_id: str | None = None
    # Set when the gateway could not be asked (unreachable, circuit open): try again later.
    # Neither refunded nor failed: the gateway has no successful charge under the key.
    failure_reason: str | None = None


def payment_refund(*, idempotency_key: str) -> RefundOutcome:
    """Refund the key's charge through the `paymentService` policy; never raises for a payment problem.

    The provider refunds a key at most once, so calling this again (a retry,
    a second job run) returns the first refund instead of a second one.
    """
    gateway = payment_gateway()
    call = _PolicyCall(idempotency_key=idempotency_key)
    try:
        result = call.run(lambda timeout: gateway.refund(idempotency_key=idempotency_key, timeout_seconds=timeout))
    except CircuitOpenError as error:
        return RefundOutcome(refunded=False, attempts=call.attempts, failure_reason=_unavailable(error))
    except TRANSIENT_ERRORS as error:
        reason = f"payment gateway unreachable after {call.attempts} attempt(s): {error}"
        logger.error("refund gave up", extra={"event": "resilience", "attempts": call.attempts, "reason": reason})
        return RefundOutcome(refunded=False, attempts=call.attempts, failure_reason=reason)
    if not result.refunded:
        return RefundOutcome(refunded=False, attempts=call.attempts)
    return RefundOutcome(refunded=True, attempts=call.attempts, refund_id=result.refund_id, charge_id=result.charge_id)
