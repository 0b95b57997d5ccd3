"""A provider slowed at run time (`manage.py payment_faults`) under a running consumer: unknown, never declined."""
import json
import time

import pytest

from orders.models import Order
from orders.reconciliation import orders_reconcile
from outbox.relay import outbox_drain
from resilience.breaker import State
from resilience.policies import breaker_for
from tests.payments.test_payment_faults_command import payment_faults_command
from tests.support import ConsumerProcess, wait_for

# A short open period so the drill heals in seconds; the 5 s time limit stays docs/contract.md's.
OPEN_SECONDS = 6.0
DRILL_POLICIES = {
    "paymentService": {
        "retry": {"initial_seconds": 0.05},
        "breaker": {"open_seconds": OPEN_SECONDS},
    }
}


@pytest.mark.many_connections
@pytest.mark.django_db(transaction=True)
def test_a_provider_slowed_at_run_time_leaves_orders_in_doubt_then_paid_once(
    place_order, broker, settings, tmp_path, payment_provider
):
    """Given a running consumer, when the provider is slowed to 6 s (over the 5 s limit) through the command, the
    breaker opens and the orders stay in doubt, never FAILED; when it is healed the same way, the breaker closes,
    new orders are paid, and reconciliation finds the charges the slow provider did make: PAID, once."""
    settings.RESILIENCE_POLICIES = DRILL_POLICIES
    consumer = ConsumerProcess(
        bootstrap=broker.bootstrap,
        log_path=tmp_path / "consumer.log",
        env={"RESILIENCE_POLICIES_JSON": json.dumps(DRILL_POLICIES)},
    ).start()

    def relay() -> None:
        outbox_drain(batch_size=100, time_budget_seconds=10)

    def orders(rows) -> list[Order]:
        return list(Order.objects.filter(id__in=[row.aggregate_id for row in rows]))

    try:
        healthy = place_order()
        relay()
        wait_for(lambda: {o.status for o in orders([healthy])} == {"PAID"}, timeout=60, what="a first order paid")

        payment_faults_command("--latency", "6")
        slow = [place_order() for _ in range(3)]
        relay()
        wait_for(lambda: all(o.payment_unknown_since for o in orders(slow)), timeout=120, what="the slow orders in doubt")

        assert {o.status for o in orders(slow)} == {"PROCESSING"}  # unknown is not declined
        assert breaker_for("paymentService").state() == State.OPEN

        payment_faults_command("--reset")
        time.sleep(OPEN_SECONDS)  # it opened before the last slow order gave up: the open period is over
        healed = [place_order() for _ in range(3)]  # the half-open trial calls
        relay()
        wait_for(lambda: {o.status for o in orders(healed)} == {"PAID"}, timeout=60, what="orders paid after healing")
        assert breaker_for("paymentService").state() == State.CLOSED

        orders_reconcile(older_than_seconds=0, max_attempts=3)

        assert {(o.status, o.payment_unknown_since) for o in orders(slow)} == {("PAID", None)}
        for order in orders(slow):
            assert len(payment_provider.charges(str(order.id))) == 1
        assert consumer.process.poll() is None  # never restarted
    finally:
        consumer.stop()
