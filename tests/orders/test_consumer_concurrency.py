"""The payment policy under the consumer's concurrency: the shared breaker's half-open trial stays bounded, calls do not queue."""
import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.db import connections

from payments.gateway import ChargeOutcome, PaymentResult, payment_charge
from resilience.breaker import State
from resilience.policies import breaker_for, policy

pytestmark = pytest.mark.django_db(transaction=True)

POLICY = "paymentService"


def _charge_at_once(count: int) -> tuple[list[str], list[PaymentResult]]:
    """Charge `count` new keys from `count` threads released together, as a full consumer pool does."""
    keys = [str(uuid.uuid4()) for _ in range(count)]
    outcomes: list[PaymentResult | None] = [None] * count
    start = threading.Barrier(count)

    def charge(index: int) -> None:
        try:
            start.wait()
            outcomes[index] = payment_charge(idempotency_key=keys[index], amount=Decimal("10.00"))
        finally:
            connections.close_all()  # the thread's own connection, or the test database cannot be dropped

    threads = [threading.Thread(target=charge, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(outcome is not None for outcome in outcomes)
    return keys, outcomes


@pytest.mark.many_connections
def test_sixteen_payments_at_once_through_a_half_open_breaker_let_only_its_trial_calls_through(payment_provider):
    payment_provider.faults(latency_seconds=0.3)  # the trials are still running when the others ask
    breaker = breaker_for(POLICY)
    config = policy(POLICY).breaker
    # Opened long enough ago that the next call finds it ready to half-open.
    breaker.store.update(breaker.name, lambda doc: doc.update(state=State.OPEN.value, opened_at=time.time() - config.open_seconds - 1))

    keys, outcomes = _charge_at_once(16)

    charged = sum(1 for key in keys if payment_provider.charges(key))
    assert 1 <= charged <= config.half_open_calls  # shared through Redis: the trial count caps every thread together
    assert sum(outcome.outcome is ChargeOutcome.APPROVED for outcome in outcomes) == charged
    refused = [outcome for outcome in outcomes if outcome.outcome is not ChargeOutcome.APPROVED]
    assert len(refused) == 16 - charged
    # Refused by the breaker: unknown (nothing was asked), never declined.
    assert all(outcome.outcome is ChargeOutcome.UNKNOWN and "circuit open" in outcome.reason for outcome in refused)
    assert breaker.state() == State.CLOSED  # the trials succeeded


@pytest.mark.many_connections
def test_sixteen_payments_at_once_do_not_queue_for_the_time_limit_threads_or_the_connection_pool(payment_provider):
    payment_provider.faults(latency_seconds=1.0)

    started = time.monotonic()
    _, outcomes = _charge_at_once(16)
    elapsed = time.monotonic() - started

    assert all(outcome.outcome is ChargeOutcome.APPROVED for outcome in outcomes)
    assert elapsed < 1.8, elapsed  # one latency, not two: no call waited for a thread
