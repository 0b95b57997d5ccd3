"""The gateway against the fake provider over HTTP: every answer classified, nothing charged twice."""
import threading
import time
import uuid
from decimal import Decimal

import pytest

from payments.client import InvalidFaults, provider_charge_create, provider_faults
from payments.gateway import (
    ChargeOutcome,
    PaymentProviderUnavailable,
    PaymentRequestRefused,
    payment_charge,
    payment_charges_page,
    payment_lookup,
    payment_refund,
)
from resilience.policies import breakers_reset
from tests.payments.conftest import FAST_POLICY, TIME_LIMIT_SECONDS
from tests.support import wait_for

pytestmark = pytest.mark.usefixtures("fast_policy")

AMOUNT = Decimal("19.99")


def new_key() -> str:
    return str(uuid.uuid4())


def test_an_approved_charge_is_approved_with_its_charge_id(payment_provider):
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts, result.reason) == (ChargeOutcome.APPROVED, 1, None)
    [charge] = payment_provider.charges(key)
    assert (charge["id"], charge["amount"], charge["status"], charge["metadata"]) == (
        result.charge_id, 1999, "succeeded", {"order_id": key}
    )


def test_a_declined_charge_is_declined_and_not_retried(payment_provider):
    payment_provider.faults(decline_rate=1.0)
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts, result.reason) == (ChargeOutcome.DECLINED, 1, "Your card was declined.")
    [charge] = payment_provider.charges(key)
    assert (charge["id"], charge["status"]) == (result.charge_id, "failed")
    lookup = payment_lookup(idempotency_key=key)
    assert (lookup.known, lookup.found.status, lookup.found.amount) == (True, "failed", AMOUNT)


def test_the_same_key_again_gets_the_first_answer_and_no_second_charge(payment_provider):
    key = new_key()
    first = payment_charge(idempotency_key=key, amount=AMOUNT)
    payment_provider.faults(decline_rate=1.0)  # would decline a new charge

    again = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (again.outcome, again.charge_id) == (ChargeOutcome.APPROVED, first.charge_id)
    assert len(payment_provider.charges(key)) == 1


def test_the_same_key_with_another_amount_is_unknown_and_not_retried(payment_provider):
    key = new_key()
    payment_charge(idempotency_key=key, amount=AMOUNT)

    result = payment_charge(idempotency_key=key, amount=Decimal("5.00"))

    assert (result.outcome, result.attempts) == (ChargeOutcome.UNKNOWN, 1)
    assert "400" in result.reason and "idempotency_key_reused" in result.reason
    assert [charge["amount"] for charge in payment_provider.charges(key)] == [1999]


def test_lookup_tells_none_from_found(payment_provider):
    key = new_key()

    none = payment_lookup(idempotency_key=key)
    charged = payment_charge(idempotency_key=key, amount=AMOUNT)
    found = payment_lookup(idempotency_key=key)

    assert (none.known, none.found) == (True, None)
    assert found.known and (found.found.id, found.found.idempotency_key, found.found.amount) == (
        charged.charge_id, key, AMOUNT
    )
    assert (found.found.status, found.found.refunded) == ("succeeded", False)


def test_a_refund_gives_the_money_back_once(payment_provider):
    key = new_key()
    charged = payment_charge(idempotency_key=key, amount=AMOUNT)

    first = payment_refund(idempotency_key=key)
    second = payment_refund(idempotency_key=key)

    assert (first.refunded, first.charge_id, first.failure_reason) == (True, charged.charge_id, None)
    assert first.refund_id.startswith("re_") and second.refund_id == first.refund_id
    [charge] = payment_provider.charges(key)
    assert (charge["refunded"], charge["amount_refunded"]) == (True, 1999)
    assert payment_lookup(idempotency_key=key).found.refunded is True


def test_a_refund_without_a_succeeded_charge_refunds_nothing(payment_provider):
    declined = new_key()
    payment_provider.faults(decline_rate=1.0)
    payment_charge(idempotency_key=declined, amount=AMOUNT)

    for key in (declined, new_key()):
        result = payment_refund(idempotency_key=key)
        assert (result.refunded, result.refund_id, result.failure_reason) == (False, None, None)
    assert payment_provider.charge(declined)["amount_refunded"] == 0


def test_5xx_answers_are_unknown_after_the_policy_s_attempts_and_charge_nothing(payment_provider):
    payment_provider.faults(error_rate=1.0)
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts, result.charge_id) == (ChargeOutcome.UNKNOWN, 3, None)
    assert "answered 50" in result.reason
    assert payment_provider.charges(key) == []


def test_an_answer_slower_than_the_time_limit_is_unknown_and_the_charge_may_exist(payment_provider):
    # The provider takes longer than the client waits, then charges anyway: exactly what must never read as declined.
    payment_provider.faults(latency_seconds=TIME_LIMIT_SECONDS * 2)
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts, result.charge_id) == (ChargeOutcome.UNKNOWN, 3, None)
    wait_for(lambda: payment_provider.charges(key), timeout=10, what="the slow charge to be made")
    lookup = payment_lookup(idempotency_key=key)
    assert (lookup.known, lookup.found.status) == (True, "succeeded")
    assert len(payment_provider.charges(key)) == 1


def test_a_reset_after_charging_is_unknown_and_the_charge_is_found_by_lookup(payment_provider):
    payment_provider.faults(reset_after_charge_rate=1.0)
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts) == (ChargeOutcome.UNKNOWN, 3)
    assert "connection failed" in result.reason
    lookup = payment_lookup(idempotency_key=key)
    assert (lookup.known, lookup.found.status, lookup.found.amount) == (True, "succeeded", AMOUNT)
    assert len(payment_provider.charges(key)) == 1  # three attempts, one charge


def test_an_answer_after_the_time_limit_is_unknown_then_the_same_key_gets_the_charge(payment_provider):
    late_seconds = TIME_LIMIT_SECONDS * 2
    payment_provider.faults(late_answer_rate=1.0, late_answer_seconds=late_seconds)
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)
    returned = time.monotonic()

    # The first attempt charged; its answer comes too late, and the retries meet the key still in use.
    assert (result.outcome, result.attempts) == (ChargeOutcome.UNKNOWN, 3)
    assert payment_lookup(idempotency_key=key).found.status == "succeeded"
    payment_provider.faults_reset()
    # Every attempt's late answer is written (each holds the key for late_seconds
    # from its arrival, the last one's arrival included: a retry that came once
    # the first had answered is answered late too, on a busy machine).
    time.sleep(max(0.0, returned + late_seconds + 0.1 - time.monotonic()))
    again = payment_charge(idempotency_key=key, amount=AMOUNT)
    assert (again.outcome, again.attempts) == (ChargeOutcome.APPROVED, 1)
    assert len(payment_provider.charges(key)) == 1


def test_a_hang_is_unknown_and_the_provider_then_confirms_no_charge(payment_provider):
    payment_provider.faults(hang_rate=1.0)
    key = new_key()
    started = time.monotonic()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)

    assert (result.outcome, result.attempts) == (ChargeOutcome.UNKNOWN, 3)
    assert time.monotonic() - started < 3 * TIME_LIMIT_SECONDS + 2  # each attempt ends at the time limit
    lookup = payment_lookup(idempotency_key=key)
    assert (lookup.known, lookup.found) == (True, None)


def test_a_key_in_use_is_unknown_not_declined(payment_provider):
    payment_provider.faults(late_answer_rate=1.0, late_answer_seconds=1.0)
    key = new_key()
    first = threading.Thread(target=provider_charge_create, kwargs={"idempotency_key": key, "amount": AMOUNT})
    first.start()
    try:
        time.sleep(0.3)  # the first request has charged and is still answering
        answer = provider_charge_create(idempotency_key=key, amount=AMOUNT)
    finally:
        first.join()
    assert (answer.outcome, answer.retryable, answer.provider_failed) == (ChargeOutcome.UNKNOWN, True, False)
    assert "409" in answer.reason
    assert len(payment_provider.charges(key)) == 1


def test_a_provider_that_is_down_is_unknown_and_cannot_be_asked(payment_provider, settings):
    # A breaker that stays closed, so each call meets the dead provider itself.
    settings.RESILIENCE_POLICIES = {"paymentService": {**FAST_POLICY, "breaker": {"window_size": 100, "minimum_calls": 100}}}
    breakers_reset()
    payment_provider.kill()  # the fixture starts it again
    key = new_key()

    charged = payment_charge(idempotency_key=key, amount=AMOUNT)
    lookup = payment_lookup(idempotency_key=key)
    refund = payment_refund(idempotency_key=key)

    assert (charged.outcome, charged.attempts) == (ChargeOutcome.UNKNOWN, 3)
    assert (lookup.known, lookup.found) == (False, None) and "could not be asked" in lookup.reason
    assert refund.refunded is False and "unreachable" in refund.failure_reason
    with pytest.raises(PaymentProviderUnavailable):
        payment_charges_page(starting_after=None, limit=10)


def test_an_open_breaker_is_unknown_and_asks_nothing(payment_provider, settings):
    settings.RESILIENCE_POLICIES = {"paymentService": {**FAST_POLICY, "breaker": {"window_size": 2, "minimum_calls": 2}}}
    breakers_reset()
    payment_provider.faults(error_rate=1.0)
    payment_charge(idempotency_key=new_key(), amount=AMOUNT)  # two failures open it
    payment_provider.faults_reset()
    key = new_key()

    result = payment_charge(idempotency_key=key, amount=AMOUNT)
    lookup = payment_lookup(idempotency_key=key)

    assert (result.outcome, result.attempts) == (ChargeOutcome.UNKNOWN, 0)
    assert "circuit open" in result.reason
    assert lookup.known is False and "circuit open" in lookup.reason
    assert payment_provider.charges(key) == []


def test_charges_are_listed_by_pages_in_creation_order_from_a_watermark(payment_provider):
    watermark = payment_provider.last_charge_id()
    keys = [new_key() for _ in range(5)]
    ids = [payment_charge(idempotency_key=key, amount=AMOUNT).charge_id for key in keys]
    payment_provider.faults(decline_rate=1.0)
    payment_charge(idempotency_key=new_key(), amount=AMOUNT)  # failed charges are not listed

    pages, cursor = [], watermark
    while True:
        page = payment_charges_page(starting_after=cursor, limit=2)
        pages.append(([charge.id for charge in page.charges], page.has_more))
        if not page.has_more:
            break
        cursor = page.charges[-1].id

    assert pages == [(ids[0:2], True), (ids[2:4], True), (ids[4:5], False)]
    created = [charge.created for charge in payment_charges_page(starting_after=watermark, limit=10).charges]
    assert created == sorted(created)


def test_a_watermark_the_provider_does_not_know_is_refused_without_opening_the_breaker(payment_provider):
    for _ in range(12):  # more than the breaker's window
        with pytest.raises(PaymentRequestRefused):
            payment_charges_page(starting_after="ch_never_issued", limit=10)
    assert payment_charge(idempotency_key=new_key(), amount=AMOUNT).outcome is ChargeOutcome.APPROVED


def test_the_fault_switch_refuses_what_it_cannot_do(payment_provider):
    with pytest.raises(InvalidFaults, match="must not exceed 1"):
        provider_faults(replace={"hang_rate": 0.6, "error_rate": 0.6})
    with pytest.raises(InvalidFaults, match="unknown fields: latency"):
        provider_faults(replace={"latency": 1})
    assert provider_faults()["hang_rate"] == 0.0  # nothing changed
    assert provider_faults(replace={"decline_rate": 0.5, "seed": 7})["decline_rate"] == 0.5
    assert provider_faults(reset=True)["decline_rate"] == 0.0
