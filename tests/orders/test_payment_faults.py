"""The mock provider's behaviour switched at run time, through Redis, without restarting anything."""
import io
import json
import subprocess
import sys
import time

import pytest
import redis
from django.core.management import CommandError, call_command

from orders.models import Order, PaymentTransaction
from orders.payment_faults import REDIS_KEY, PaymentFaults, payment_faults_cache_clear, payment_faults_current
from outbox.relay import outbox_drain
from resilience.breaker import State
from resilience.policies import breaker_for
from tests.support import ROOT, ConsumerProcess, TcpProxy, platform_process_env, wait_for


def show() -> dict:
    out = io.StringIO()
    call_command("payment_faults", show=True, stdout=out)
    return json.loads(out.getvalue().splitlines()[-1])


def payment_faults_command(*arguments: str) -> str:
    """`manage.py payment_faults` as an operator runs it: its own process."""
    result = subprocess.run(
        [sys.executable, "manage.py", "payment_faults", *arguments],
        cwd=ROOT,
        env=platform_process_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


class TestSwitch:
    def test_set_show_and_reset(self, payment_faults, settings):
        settings.PAYMENT_MOCK_LATENCY_SECONDS = 0.05
        assert show() == {"overrides": {}, "inForce": {"latencySeconds": 0.05, "successRate": 1.0, "failureKind": "decline"}}

        call_command("payment_faults", latency=0.3, success_rate=0.5, failure_kind="timeout", stdout=io.StringIO())

        assert show()["inForce"] == {"latencySeconds": 0.3, "successRate": 0.5, "failureKind": "timeout"}
        call_command("payment_faults", latency=0.1, stdout=io.StringIO())  # changes only what it names
        assert show()["inForce"] == {"latencySeconds": 0.1, "successRate": 0.5, "failureKind": "timeout"}

        call_command("payment_faults", reset=True, stdout=io.StringIO())

        assert show() == {"overrides": {}, "inForce": {"latencySeconds": 0.05, "successRate": 1.0, "failureKind": "decline"}}

    @pytest.mark.parametrize(
        "options,message",
        [
            ({"success_rate": 1.5}, "between 0 and 1"),
            ({"latency": -1.0}, "cannot be negative"),
            ({"reset": True, "latency": 1.0}, "cannot be combined"),
            ({}, "nothing to do"),
        ],
    )
    def test_invalid_requests_change_nothing(self, payment_faults, options, message):
        with pytest.raises(CommandError, match=message):
            call_command("payment_faults", **options)
        assert show()["overrides"] == {}

    def test_another_process_change_is_seen_within_a_second(self, payment_faults, settings):
        settings.PAYMENT_MOCK_LATENCY_SECONDS = 0.05
        assert payment_faults_current().latency_seconds == 0.05  # read and cached

        # Written as the command in another process writes it (the command's own start takes over a second).
        redis.Redis.from_url(settings.REDIS_URL).hset(REDIS_KEY, mapping={"latency_seconds": "2.5", "failure_kind": "connection"})

        assert payment_faults_current().latency_seconds == 0.05  # this process's cached view, at most a second old
        time.sleep(1.05)
        assert payment_faults_current() == PaymentFaults(success_rate=1.0, latency_seconds=2.5, failure_kind="connection")

    def test_redis_down_falls_back_to_the_settings_quickly(self, payment_faults, settings):
        host, port = settings.REDIS_URL.removeprefix("redis://").split("/")[0].split(":")
        database = settings.REDIS_URL.rsplit("/", 1)[1]
        proxy = TcpProxy(host, int(port)).start()
        direct = redis.Redis.from_url(settings.REDIS_URL)
        settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}/{database}"
        settings.PAYMENT_MOCK_SUCCESS_RATE = 0.9
        try:
            payment_faults_cache_clear()
            call_command("payment_faults", success_rate=0.2, stdout=io.StringIO())
            assert payment_faults_current().success_rate == 0.2
            proxy.cut()  # Redis unreachable from here on
            payment_faults_cache_clear()

            started = time.monotonic()
            faults = payment_faults_current()
            first = time.monotonic() - started
            started = time.monotonic()
            payment_faults_current()
            cached = time.monotonic() - started

            assert faults.success_rate == 0.9
            assert first < 1.0 and cached < 0.05  # one short timeout, then no Redis call within the second
            with pytest.raises(CommandError, match="unreachable, nothing changed"):
                call_command("payment_faults", latency=1.0)
        finally:
            proxy.cut()
            payment_faults_cache_clear()
        assert direct.hgetall(REDIS_KEY) == {b"success_rate": b"0.2"}  # the failed command wrote nothing


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
def test_a_provider_slowed_at_run_time_opens_the_breaker_and_healed_closes_it(
    place_order, broker, settings, tmp_path, payment_faults
):
    """Given a running consumer, when the provider is slowed to 6 s through the switch, orders fail by
    the time limit and the breaker opens; when it is healed the same way, the breaker closes and orders are paid."""
    settings.RESILIENCE_POLICIES = DRILL_POLICIES
    consumer = ConsumerProcess(
        bootstrap=broker.bootstrap,
        log_path=tmp_path / "consumer.log",
        env={"RESILIENCE_POLICIES_JSON": json.dumps(DRILL_POLICIES)},
    ).start()

    def relay() -> None:
        outbox_drain(batch_size=100, time_budget_seconds=10)

    def statuses(rows) -> set[str]:
        return set(Order.objects.filter(id__in=[row.aggregate_id for row in rows]).values_list("status", flat=True))

    try:
        healthy = place_order()
        relay()
        wait_for(lambda: statuses([healthy]) == {"PAID"}, timeout=60, what="a first order paid")

        payment_faults_command("--latency", "6")
        time.sleep(1.1)  # every process sees it within a second
        slow = [place_order() for _ in range(3)]
        relay()
        wait_for(lambda: statuses(slow) == {"FAILED"}, timeout=120, what="the slow orders to fail")

        assert breaker_for("paymentService").state() == State.OPEN
        reasons = [payment.failure_reason for payment in PaymentTransaction.objects.filter(order_id__in=[r.aggregate_id for r in slow])]
        # Paid in parallel, the three time out together until the breaker opens on them: each gave up
        # either after its 3 attempts or when the breaker opened between them.
        assert all("unreachable after 3 attempt(s)" in reason or "circuit open" in reason for reason in reasons), reasons
        assert any("circuit open" in reason for reason in reasons), reasons

        payment_faults_command("--reset")
        time.sleep(OPEN_SECONDS)  # it opened before the last slow order failed: the open period is over
        healed = [place_order() for _ in range(3)]  # the half-open trial calls
        relay()
        wait_for(lambda: statuses(healed) == {"PAID"}, timeout=60, what="orders paid after healing")

        assert breaker_for("paymentService").state() == State.CLOSED
        assert consumer.process.poll() is None  # never restarted
    finally:
        consumer.stop()
