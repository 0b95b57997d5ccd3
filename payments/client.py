"""The payment provider's HTTP client, and the one classification of its answers.

One request per function, no retries and no breaker (that is `payments.gateway`).
Every answer to a charge is classified here and nowhere else:

* APPROVED: a 2xx whose charge succeeded;
* DECLINED: a 402 `card_error`, the provider's word that it said no;
* UNKNOWN: everything else (a time-out, a reset, a 5xx or a proxy's page, a
  409 "key in use", no answer at all): nothing can be said about the charge,
  which may well exist; only asking for it under the same key can tell.

httpx, not requests or urllib3 directly: one thread-safe `httpx.Client` per
process shares pooled keep-alive connections among the consumer's payment
threads, with explicit, separate connect, read, write and pool time-outs and
pool limits (requests has one (connect, read) pair and no pool time-out).
"""
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import httpx
from django.conf import settings

from resilience.policies import policy

logger = logging.getLogger(__name__)

POLICY = "paymentService"
CURRENCY = "usd"
MINOR_UNITS = Decimal(100)
# Answers that say nothing about the charge, yet are worth the same request again soon.
RETRYABLE_STATUSES = frozenset({409, 429})


class ChargeOutcome(str, Enum):
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ProviderCharge:
    """A charge as the provider holds it."""

    id: str
    idempotency_key: str
    amount: Decimal
    status: str  # "succeeded" or "failed"
    refunded: bool
    created: datetime


@dataclass(frozen=True)
class ChargeAnswer:
    """One charge request's answer, classified."""

    outcome: ChargeOutcome
    charge_id: str | None = None
    reason: str | None = None
    # The provider failed to answer (a time-out, a reset, a 5xx): a breaker failure, worth a retry.
    provider_failed: bool = False
    # Worth asking again under the same key (false for a 4xx: the same request gets the same answer).
    retryable: bool = False


@dataclass(frozen=True)
class RefundAnswer:
    refunded: bool
    refund_id: str | None = None
    charge_id: str | None = None


class PaymentProviderUnavailable(Exception):
    """The provider could not be asked, or gave no usable answer: nothing is known."""


class PaymentRequestRefused(PaymentProviderUnavailable):
    """A healthy provider refused the request itself (a 4xx, e.g. a cursor it does not know).

    Still no usable answer for the caller, but not the provider's failure: the
    breaker must not count it, or one bad watermark would cut every payment off.
    """


class InvalidFaults(ValueError):
    """The provider refused a fault switch setting (its message says why)."""


def amount_to_minor_units(amount: Decimal) -> int:
    """Return cents; raise ValueError for an amount with fractions of a cent or not positive."""
    minor = amount * MINOR_UNITS
    if minor != minor.to_integral_value() or minor <= 0:
        raise ValueError(f"amount {amount} is not a positive number of cents")
    return int(minor)


def amount_from_minor_units(minor: int) -> Decimal:
    return (Decimal(minor) / MINOR_UNITS).quantize(Decimal("0.01"))


_lock = threading.Lock()
_client: tuple[tuple, httpx.Client] | None = None


def _http() -> httpx.Client:
    """The process's client, made on first use (settings are read then, never at import) and again if they change."""
    global _client
    read_seconds = policy(POLICY).timeout_seconds
    connect_seconds = settings.PAYMENT_CONNECT_TIMEOUT_SECONDS
    config = (settings.PAYMENT_PROVIDER_URL, connect_seconds, read_seconds, settings.PAYMENT_POOL_SIZE)
    with _lock:
        if _client is not None and _client[0] == config:
            return _client[1]
        if _client is not None:
            _client[1].close()
        client = httpx.Client(
            base_url=config[0],
            # The pool wait is short: a payment thread should find a free connection at once (see PAYMENT_POOL_SIZE).
            timeout=httpx.Timeout(connect=connect_seconds, read=read_seconds, write=read_seconds, pool=connect_seconds),
            limits=httpx.Limits(max_connections=config[3], max_keepalive_connections=config[3], keepalive_expiry=30.0),
            headers={"User-Agent": "ecommerce-payments/1"},
        )
        _client = (config, client)
        return client


def payment_client_reset() -> None:
    """Close the process's client and its connections (tests, or settings changed)."""
    global _client
    with _lock:
        if _client is not None:
            _client[1].close()
        _client = None


def _error(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _describe(response: httpx.Response) -> str:
    error = _error(response)
    detail = error.get("code") or error.get("message") or response.text[:100].strip()
    return f"the payment provider answered {response.status_code}: {detail}"


def provider_charge_create(*, idempotency_key: str, amount: Decimal) -> ChargeAnswer:
    """Ask for one charge under the key; classify whatever happens (never raises for the network or the provider)."""
    body = {"amount": amount_to_minor_units(amount), "currency": CURRENCY, "metadata": {"order_id": idempotency_key}}
    try:
        response = _http().post("/v1/charges", json=body, headers={"Idempotency-Key": idempotency_key})
    except httpx.TimeoutException as error:
        return ChargeAnswer(ChargeOutcome.UNKNOWN, reason=f"no answer from the payment provider in time ({error!r})",
                            provider_failed=True, retryable=True)  # fmt: skip
    except httpx.TransportError as error:
        return ChargeAnswer(ChargeOutcome.UNKNOWN, reason=f"the payment provider's connection failed ({error!r})",
                            provider_failed=True, retryable=True)  # fmt: skip
    if response.is_success:
        try:
            charge = response.json()
        except ValueError:
            charge = {}
        if isinstance(charge, dict) and charge.get("status") == "succeeded" and charge.get("id"):
            return ChargeAnswer(ChargeOutcome.APPROVED, charge_id=charge["id"])
        return ChargeAnswer(ChargeOutcome.UNKNOWN, reason=f"unreadable charge in a {response.status_code} answer",
                            provider_failed=True, retryable=True)  # fmt: skip
    error = _error(response)
    if response.status_code == 402 and error.get("type") == "card_error":
        reason = error.get("message") or error.get("code") or "declined"
        return ChargeAnswer(ChargeOutcome.DECLINED, charge_id=error.get("charge"), reason=reason)
    failed = response.status_code >= 500 or response.status_code == 429
    retryable = failed or response.status_code in RETRYABLE_STATUSES
    return ChargeAnswer(ChargeOutcome.UNKNOWN, reason=_describe(response), provider_failed=failed, retryable=retryable)


def _charge(document: dict[str, Any]) -> ProviderCharge:
    return ProviderCharge(
        id=document["id"],
        idempotency_key=document["idempotency_key"],
        amount=amount_from_minor_units(document["amount"]),
        status=document["status"],
        refunded=bool(document.get("refunded")),
        created=datetime.fromtimestamp(document["created"], tz=UTC),
    )


def _get_list(params: dict[str, Any]) -> tuple[list[ProviderCharge], bool]:
    try:
        response = _http().get("/v1/charges", params=params)
    except httpx.HTTPError as error:
        raise PaymentProviderUnavailable(f"the payment provider could not be asked: {error!r}") from error
    if response.is_client_error:
        raise PaymentRequestRefused(_describe(response))
    if not response.is_success:
        raise PaymentProviderUnavailable(_describe(response))
    try:
        body = response.json()
        return [_charge(item) for item in body["data"]], bool(body["has_more"])
    except (ValueError, KeyError, TypeError) as error:
        raise PaymentProviderUnavailable(f"unreadable charge list from the payment provider: {error!r}") from error


def provider_charge_find(*, idempotency_key: str) -> ProviderCharge | None:
    """The charge made under the key, or None: the provider's word that there is none. Raise if it cannot be asked."""
    charges, _ = _get_list({"idempotency_key": idempotency_key})
    return charges[0] if charges else None


def provider_charges_list(
    *, starting_after: str | None, limit: int, include_failed: bool = False
) -> tuple[list[ProviderCharge], bool]:
    """A page of charges in creation order after `starting_after` (None: from the first), and whether more follow."""
    params = {"starting_after": starting_after or "", "limit": limit}
    if include_failed:
        params["status"] = "all"
    return _get_list(params)


def provider_refund_create(*, idempotency_key: str) -> RefundAnswer:
    """Refund the charge made under the order's key, once (the refund's own key is derived from it).

    Not refunded when there is no succeeded charge under the key. A charge
    refunded already counts as refunded. Raise PaymentProviderUnavailable when
    the outcome is unknown.
    """
    charge = provider_charge_find(idempotency_key=idempotency_key)
    if charge is None or charge.status != "succeeded":
        return RefundAnswer(refunded=False)
    try:
        response = _http().post(
            "/v1/refunds", json={"charge": charge.id}, headers={"Idempotency-Key": f"refund-{idempotency_key}"}
        )
    except httpx.HTTPError as error:
        raise PaymentProviderUnavailable(f"no answer from the payment provider to a refund: {error!r}") from error
    if response.is_success:
        try:
            refund = response.json()
            return RefundAnswer(refunded=True, refund_id=refund["id"], charge_id=refund["charge"])
        except (ValueError, KeyError, TypeError) as error:
            raise PaymentProviderUnavailable(f"unreadable refund from the payment provider: {error!r}") from error
    if response.status_code == 400 and _error(response).get("code") == "charge_already_refunded":
        return RefundAnswer(refunded=True, charge_id=charge.id)
    raise PaymentProviderUnavailable(_describe(response))


def provider_faults(*, replace: dict[str, Any] | None = None, reset: bool = False) -> dict[str, Any]:
    """Read the provider's fault switch, replace it, or reset it; return what is in force (drills and tests only)."""
    try:
        if reset:
            response = _http().delete("/_faults")
        elif replace is not None:
            response = _http().put("/_faults", json=replace)
        else:
            response = _http().get("/_faults")
    except httpx.HTTPError as error:
        raise PaymentProviderUnavailable(f"the payment provider could not be asked: {error!r}") from error
    if response.status_code == 400:
        raise InvalidFaults(_error(response).get("message") or response.text)
    if not response.is_success:
        raise PaymentProviderUnavailable(_describe(response))
    return response.json()
