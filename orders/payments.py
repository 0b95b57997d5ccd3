"""The payment gateway and the `paymentService` policy around it.

`PaymentGateway` is what order management calls; `MockPaymentGateway` is the
implementation until a real provider (a Stripe-style HTTP client) is added,
and its success rate, latency and failure kind are settings so tests and
drills can inject faults. Callers go through `payment_charge`, which adds the
SPEC.md policy: retry only transient errors, a time limit per call, and the
breaker shared by every consumer process.
"""
import hashlib
import logging
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from prometheus_client import Counter

from orders.models import MockGatewayCharge
from resilience.breaker import CircuitOpenError
from resilience.policies import breaker_for, policy
from resilience.retry import retrying
from resilience.timeout import TimeLimitExceeded, call_with_time_limit

logger = logging.getLogger(__name__)

POLICY = "paymentService"

PAYMENT_ATTEMPTS = Counter("payment_attempts", "Calls to the payment gateway by outcome.", ["outcome"])
# PaymentFailuresHigh reads these: exported at zero from process start.
for _outcome in ("approved", "declined", "transient_error", "circuit_open"):
    PAYMENT_ATTEMPTS.labels(_outcome)


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


class PaymentGateway(Protocol):
    def charge(self, *, idempotency_key: str, amount: Decimal, timeout_seconds: float) -> ChargeResult:
        """Charge once per idempotency key; a repeated key returns the first answer."""


class MockPaymentGateway:
    """Settings: PAYMENT_MOCK_SUCCESS_RATE, PAYMENT_MOCK_LATENCY_SECONDS, PAYMENT_MOCK_FAILURE_KIND."""

    def __init__(self, *, success_rate: float, latency_seconds: float, failure_kind: str) -> None:
        self.success_rate = success_rate
        self.latency_seconds = latency_seconds
        self.failure_kind = failure_kind

    def charge(self, *, idempotency_key: str, amount: Decimal, timeout_seconds: float) -> ChargeResult:
        try:
            return self._charge(idempotency_key=idempotency_key, amount=amount, timeout_seconds=timeout_seconds)
        finally:
            # The provider's side: its ledger write is its own, never part of the
            # caller's transaction (it runs on the time limit's thread anyway).
            connection.close()

    def _charge(self, *, idempotency_key: str, amount: Decimal, timeout_seconds: float) -> ChargeResult:
        # Like an HTTP client with a timeout: wait at most that long.
        time.sleep(min(self.latency_seconds, timeout_seconds))
        if self.latency_seconds > timeout_seconds:
            raise PaymentTimeout(f"no answer from the payment provider within {timeout_seconds:.1f}s")
        previous = MockGatewayCharge.objects.filter(idempotency_key=idempotency_key).first()
        if previous is not None:
            return self._result(previous)
        if random.random() >= self.success_rate:
            if self.failure_kind == "timeout":
                raise PaymentTimeout("the payment provider timed out")
            if self.failure_kind == "connection":
                raise PaymentConnectionError("connection to the payment provider refused")
            return self._record(idempotency_key, amount, approved=False, decline_reason="card declined")
        reference = "mock_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        return self._record(idempotency_key, amount, approved=True, external_transaction_id=reference)

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


def payment_gateway() -> PaymentGateway:
    return MockPaymentGateway(
        success_rate=settings.PAYMENT_MOCK_SUCCESS_RATE,
        latency_seconds=settings.PAYMENT_MOCK_LATENCY_SECONDS,
        failure_kind=settings.PAYMENT_MOCK_FAILURE_KIND,
    )


@dataclass(frozen=True)
class PaymentOutcome:
    approved: bool
    attempts: int
    external_transaction_id: str | None = None
    failure_reason: str | None = None


def payment_charge(
    *, idempotency_key: str, amount: Decimal, gateway: PaymentGateway | None = None, sleep=time.sleep
) -> PaymentOutcome:
    """Charge through the `paymentService` policy; never raises for a payment problem."""
    gateway = gateway or payment_gateway()
    rules = policy(POLICY)
    breaker = breaker_for(POLICY)
    attempts = 0

    def attempt() -> ChargeResult:
        nonlocal attempts
        permit = breaker.acquire()  # CircuitOpenError: fail fast, the gateway is not called
        attempts += 1
        started = time.monotonic()
        try:
            result = call_with_time_limit(
                lambda: gateway.charge(
                    idempotency_key=idempotency_key, amount=amount, timeout_seconds=rules.timeout_seconds
                ),
                seconds=rules.timeout_seconds,
            )
        except TRANSIENT_ERRORS as error:
            breaker.record_failure(permit)
            PAYMENT_ATTEMPTS.labels("transient_error").inc()
            logger.warning(
                "payment attempt failed",
                extra={"event": "resilience", "attempt": attempts, "error": repr(error), "idempotency_key": idempotency_key},
            )
            raise
        breaker.record_success(permit, duration=time.monotonic() - started)
        PAYMENT_ATTEMPTS.labels("approved" if result.approved else "declined").inc()
        return result

    try:
        for retry_state in retrying(rules.retry, retry_on=lambda error: isinstance(error, TRANSIENT_ERRORS), sleep=sleep):
            with retry_state:
                result = attempt()
    except CircuitOpenError as error:
        PAYMENT_ATTEMPTS.labels("circuit_open").inc()
        reason = f"payment service unavailable (circuit open, retry in {error.retry_after:.0f}s)"
        return PaymentOutcome(approved=False, attempts=attempts, failure_reason=reason)
    except TRANSIENT_ERRORS as error:
        reason = f"payment gateway unreachable after {attempts} attempt(s): {error}"
        logger.error("payment gave up", extra={"event": "resilience", "attempts": attempts, "reason": reason})
        return PaymentOutcome(approved=False, attempts=attempts, failure_reason=reason)
    if result.approved:
        return PaymentOutcome(approved=True, attempts=attempts, external_transaction_id=result.external_transaction_id)
    return PaymentOutcome(approved=False, attempts=attempts, failure_reason=result.decline_reason or "declined")
