"""The payment gateway order management calls: the provider's client under the `paymentService` policy.

The policy (docs/contract.md "Resilience policies"): the breaker shared by
every process, a time limit per call, and retries. Only an UNKNOWN answer is
retried, always under the same idempotency key, so a retry can at worst get
back the charge the lost answer was about, never a second one. Once the
retries are spent the result is UNKNOWN, never a decline: whether the money
was taken is then for `payment_lookup` to find out. An open breaker is UNKNOWN
too (nothing was asked). Retries happen here and only here, one level.

The time limit (`resilience.timeout`) bounds the whole call, including a body
that trickles past the client's read time-out; the call abandoned at the limit
goes on in its thread, which is harmless now that its answer is not needed to
know what happened.
"""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from payments.client import (
    POLICY,
    ChargeAnswer,
    ChargeOutcome,
    PaymentProviderUnavailable,
    PaymentRequestRefused,
    ProviderCharge,
    provider_charge_create,
    provider_charge_find,
    provider_charges_list,
    provider_refund_create,
)
from payments.metrics import PAYMENT_ATTEMPTS, PAYMENT_LOOKUPS
from resilience.breaker import CircuitOpenError
from resilience.policies import breaker_for, policy
from resilience.retry import retrying
from resilience.timeout import TimeLimitExceeded, call_with_time_limit

__all__ = [
    "ChargeOutcome",
    "ChargesPage",
    "LookupResult",
    "PaymentProviderUnavailable",
    "PaymentRequestRefused",
    "PaymentResult",
    "ProviderCharge",
    "RefundResult",
    "payment_charge",
    "payment_charges_page",
    "payment_lookup",
    "payment_refund",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class PaymentResult:
    outcome: ChargeOutcome
    attempts: int
    charge_id: str | None = None
    # Why it was declined, or why nothing is known.
    reason: str | None = None


@dataclass(frozen=True)
class LookupResult:
    found: ProviderCharge | None
    # False: the provider could not be asked (time-out, 5xx, breaker open), so `found` None says nothing.
    known: bool
    reason: str | None = None


@dataclass(frozen=True)
class RefundResult:
    refunded: bool
    attempts: int
    refund_id: str | None = None
    charge_id: str | None = None
    # Set when the provider could not be asked: try again later. Neither refunded nor failed:
    # the provider has no succeeded charge under the key.
    failure_reason: str | None = None


@dataclass(frozen=True)
class ChargesPage:
    charges: list[ProviderCharge]
    has_more: bool


class _Unanswered(Exception):
    """An attempt that told nothing about the charge: retried under the same key."""


def _circuit_open(error: CircuitOpenError) -> str:
    return f"payment service unavailable (circuit open, retry in {error.retry_after:.0f}s)"


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    """Run one provider call under the policy's time limit; return its result and how long it took."""
    seconds = policy(POLICY).timeout_seconds
    started = time.monotonic()
    return call_with_time_limit(call, seconds=seconds), time.monotonic() - started


class _Attempts:
    """The attempts of one operation under the policy: each takes a breaker permit and reports back."""

    def __init__(self, *, idempotency_key: str) -> None:
        self.idempotency_key = idempotency_key
        self.count = 0

    def unanswered(self, reason: str) -> _Unanswered:
        PAYMENT_ATTEMPTS.labels("transient_error").inc()
        logger.warning(
            "payment attempt told nothing",
            extra={"event": "resilience", "attempt": self.count, "error": reason, "idempotency_key": self.idempotency_key},
        )
        return _Unanswered(reason)

    def charge_once(self, amount: Decimal) -> ChargeAnswer:
        breaker = breaker_for(POLICY)
        permit = breaker.acquire()  # CircuitOpenError: nothing is asked
        self.count += 1
        try:
            answer, duration = _timed(lambda: provider_charge_create(idempotency_key=self.idempotency_key, amount=amount))
        except TimeLimitExceeded as error:
            breaker.record_failure(permit)
            raise self.unanswered(str(error)) from None
        except BaseException:
            breaker.record_failure(permit)
            raise
        if answer.provider_failed:
            breaker.record_failure(permit)
        else:
            breaker.record_success(permit, duration=duration)
        if answer.outcome is ChargeOutcome.UNKNOWN and answer.retryable:
            raise self.unanswered(answer.reason or "unknown")
        return answer

    def refund_once(self) -> RefundResult:
        breaker = breaker_for(POLICY)
        permit = breaker.acquire()
        self.count += 1
        try:
            answer, duration = _timed(lambda: provider_refund_create(idempotency_key=self.idempotency_key))
        except (TimeLimitExceeded, PaymentProviderUnavailable) as error:
            breaker.record_failure(permit)
            raise self.unanswered(str(error)) from None
        except BaseException:
            breaker.record_failure(permit)
            raise
        breaker.record_success(permit, duration=duration)
        return RefundResult(refunded=answer.refunded, attempts=self.count, refund_id=answer.refund_id,
                            charge_id=answer.charge_id)  # fmt: skip


def _with_retries(attempt: Callable[[], T]) -> T:
    for retry_state in retrying(policy(POLICY).retry, retry_on=lambda error: isinstance(error, _Unanswered)):
        with retry_state:
            result = attempt()
    return result


def payment_charge(*, idempotency_key: str, amount: Decimal) -> PaymentResult:
    """Charge once per key through the `paymentService` policy; never raises for a payment problem.

    APPROVED or DECLINED is the provider's word; UNKNOWN means the charge may
    or may not exist (`payment_lookup` tells, later).
    """
    attempts = _Attempts(idempotency_key=idempotency_key)
    try:
        answer = _with_retries(lambda: attempts.charge_once(amount))
    except CircuitOpenError as error:
        PAYMENT_ATTEMPTS.labels("circuit_open").inc()
        return PaymentResult(ChargeOutcome.UNKNOWN, attempts=attempts.count, reason=_circuit_open(error))
    except _Unanswered as error:
        reason = f"no answer from the payment provider after {attempts.count} attempt(s): {error}"
        logger.error("payment outcome unknown", extra={"event": "resilience", "attempts": attempts.count, "reason": reason})
        return PaymentResult(ChargeOutcome.UNKNOWN, attempts=attempts.count, reason=reason)
    if answer.outcome is ChargeOutcome.UNKNOWN:  # an answer that a retry would not change (a 4xx)
        logger.error("payment refused as asked", extra={"event": "resilience", "reason": answer.reason})
        return PaymentResult(ChargeOutcome.UNKNOWN, attempts=attempts.count, reason=answer.reason)
    PAYMENT_ATTEMPTS.labels("approved" if answer.outcome is ChargeOutcome.APPROVED else "declined").inc()
    return PaymentResult(answer.outcome, attempts=attempts.count, charge_id=answer.charge_id, reason=answer.reason)


def _asked_once(call: Callable[[], T]) -> T:
    """One read through the breaker and the time limit; raise PaymentProviderUnavailable if nothing came of it."""
    breaker = breaker_for(POLICY)
    try:
        permit = breaker.acquire()
    except CircuitOpenError as error:
        raise PaymentProviderUnavailable(_circuit_open(error)) from error
    try:
        result, duration = _timed(call)
    except PaymentRequestRefused:
        breaker.record_success(permit)  # the provider answered: refusing our request is not its failure
        raise
    except (TimeLimitExceeded, PaymentProviderUnavailable) as error:
        breaker.record_failure(permit)
        raise PaymentProviderUnavailable(str(error)) from error
    except BaseException:
        breaker.record_failure(permit)
        raise
    breaker.record_success(permit, duration=duration)
    return result


def payment_lookup(*, idempotency_key: str) -> LookupResult:
    """Ask the provider for the charge under the key: found, known to be absent, or unknown. Never raises for it."""
    try:
        charge = _asked_once(lambda: provider_charge_find(idempotency_key=idempotency_key))
    except PaymentProviderUnavailable as error:
        PAYMENT_LOOKUPS.labels("unknown").inc()
        return LookupResult(found=None, known=False, reason=str(error))
    PAYMENT_LOOKUPS.labels("none" if charge is None else "found").inc()
    return LookupResult(found=charge, known=True)


def payment_charges_page(*, starting_after: str | None, limit: int) -> ChargesPage:
    """Succeeded charges in creation order after `starting_after`; raise PaymentProviderUnavailable if it cannot be asked."""
    charges, has_more = _asked_once(lambda: provider_charges_list(starting_after=starting_after, limit=limit))
    return ChargesPage(charges=charges, has_more=has_more)


def payment_refund(*, idempotency_key: str) -> RefundResult:
    """Refund the key's charge through the `paymentService` policy; never raises for a payment problem.

    The provider refunds a charge at most once and replays a refund key's
    first answer, so calling this again (a retry, a second job run) returns
    the first refund instead of a second one.
    """
    attempts = _Attempts(idempotency_key=idempotency_key)
    try:
        return _with_retries(attempts.refund_once)
    except CircuitOpenError as error:
        return RefundResult(refunded=False, attempts=attempts.count, failure_reason=_circuit_open(error))
    except _Unanswered as error:
        reason = f"payment provider unreachable after {attempts.count} attempt(s): {error}"
        logger.error("refund gave up", extra={"event": "resilience", "attempts": attempts.count, "reason": reason})
        return RefundResult(refunded=False, attempts=attempts.count, failure_reason=reason)
