"""`manage.py payments_ledger_check` against the fake provider over HTTP: each planted mismatch is printed and fails it."""
import io
import uuid
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orders.models import Order
from payments.client import payment_client_reset
from payments.gateway import ChargeOutcome, payment_charge, payment_refund
from tests.factories import OrderFactory
from tests.payment_provider import PaymentProvider

pytestmark = pytest.mark.django_db


def check(*arguments: str) -> tuple[int, list[str]]:
    """Run the command; return its exit status and its output lines."""
    out = io.StringIO()
    try:
        call_command("payments_ledger_check", *arguments, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue().splitlines()
    return 0, out.getvalue().splitlines()


def charge(order: Order, key: str | None = None) -> None:
    result = payment_charge(idempotency_key=key or str(order.id), amount=order.subtotal)
    assert result.outcome == ChargeOutcome.APPROVED


@pytest.fixture
def since(payment_provider) -> str:
    """The test's window: the worker's provider keeps earlier tests' charges, whose orders are gone."""
    return datetime.now(UTC).isoformat()


def test_a_ledger_that_adds_up_exits_0_with_its_summary(since):
    paid, cancelled = OrderFactory(status="PAID"), OrderFactory(status="CANCELLED")
    charge(paid)
    charge(cancelled)
    assert payment_refund(idempotency_key=str(cancelled.id)).refunded
    OrderFactory(status="FAILED")  # declined: nothing charged, nothing to compare

    status, lines = check("--since", since)

    assert status == 0
    assert lines == ["ledger: 2 charges (1 refunded), 2 orders compared, 0 still in payment (not judged); 0 mismatches"]


def test_a_charged_order_that_is_not_paid_exits_1_with_its_line(since):
    failed = OrderFactory(status="FAILED")
    charge(failed)

    status, lines = check("--since", since)

    assert status == 1
    assert lines[0].startswith(f"charged, not paid: order {failed.order_number} (FAILED, total 19.99): provider holds 19.99 in 1 charge(s)")
    assert lines[-1].endswith("1 mismatches (1 charged, not paid)")


def test_a_paid_order_without_a_charge_exits_1_with_its_line(since):
    paid = OrderFactory(status="PAID")

    status, lines = check("--since", since)

    assert status == 1
    assert lines[0] == f"paid, no charge: order {paid.order_number} (PAID, total 19.99): provider holds 0.00 in 0 charge(s)"


def test_a_paid_order_charged_twice_or_refunded_exits_1_with_a_line_each(since):
    """A second code path that spelled the order id without hyphens charged it again; another order was refunded."""
    doubled, refunded = OrderFactory(status="PAID"), OrderFactory(status="FULFILLED")
    charge(doubled)
    charge(doubled, key=doubled.id.hex)
    charge(refunded)
    assert payment_refund(idempotency_key=str(refunded.id)).refunded

    status, lines = check("--since", since)

    assert status == 1
    double = f"double charge: order {doubled.order_number} (PAID, total 19.99): provider holds 39.98 in 2 charge(s)"
    refund = f"paid, no charge: order {refunded.order_number} (FULFILLED, total 19.99): provider holds 0.00 in 0 charge(s), 1 refunded"
    assert sorted(line.partition(" [")[0] for line in lines[:2]) == sorted([double, refund])
    assert lines[-1].endswith("2 mismatches (1 paid, no charge, 1 double charge)")


def test_orders_still_in_payment_are_listed_apart_and_do_not_fail_it(since):
    in_payment = OrderFactory(status="PROCESSING")
    charge(in_payment)

    status, lines = check("--since", since)

    assert status == 0
    assert lines[0].startswith(f"in payment: order {in_payment.order_number} (PROCESSING, total 19.99): provider holds 19.99")
    assert "1 still in payment (not judged); 0 mismatches" in lines[-1]


def test_without_a_window_every_charge_counts_and_a_stray_one_fails_it(tmp_path, settings):
    provider = PaymentProvider(store=tmp_path / "ledger.sqlite3").start()
    try:
        settings.PAYMENT_PROVIDER_URL = provider.url
        payment_client_reset()
        paid = OrderFactory(status="PAID")
        charge(paid)
        key = f"stray-{uuid.uuid4()}"
        assert payment_charge(idempotency_key=key, amount=paid.subtotal).outcome == ChargeOutcome.APPROVED

        status, lines = check()

        assert status == 1
        assert lines[0].startswith(f"charge without an order: key {key} (no such order): provider holds 19.99 in 1 charge(s)")
        assert lines[-1] == "ledger: 2 charges (0 refunded), 1 orders compared, 0 still in payment (not judged); 1 mismatches (1 charge without an order)"
    finally:
        provider.close()
        payment_client_reset()


def test_a_provider_that_cannot_be_asked_exits_2(payment_provider, since):
    payment_provider.kill()  # the fixture starts it again afterwards

    with pytest.raises(CommandError, match="the payment provider cannot be asked") as error:
        call_command("payments_ledger_check", "--since", since, stdout=io.StringIO())

    assert error.value.returncode == 2


def test_a_malformed_since_is_refused_with_a_clear_message(payment_provider):
    with pytest.raises(CommandError, match="not an ISO 8601 date and time with a time zone: 'yesterday'"):
        call_command("payments_ledger_check", "--since", "yesterday", stdout=io.StringIO())
