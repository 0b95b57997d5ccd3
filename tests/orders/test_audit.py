"""The payment audit against the fake provider over HTTP: it reads from its watermark, refunds what no PAID order holds."""
import uuid
from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from orders.audit import AUDIT, Stop, payment_charges_audit
from orders.models import Order, PaymentAuditWatermark, PaymentTransaction
from outbox.models import OutboxEvent
from payments.gateway import ChargeOutcome, payment_charge
from tests.factories import OrderFactory
from tests.support import shared_state_reset

pytestmark = pytest.mark.django_db

FAST_RETRIES = {"retry": {"initial_seconds": 0.01, "max_seconds": 0.02}}
RULES = {"grace_seconds": 0, "unsettled_wait_seconds": 3600, "max_attempts": 3, "backoff_base_seconds": 60}


def audit(**overrides):
    return payment_charges_audit(**{**RULES, **overrides})


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def charged(status: str) -> Order:
    """An order in `status` whose charge the provider holds."""
    order = OrderFactory(status=status)
    assert payment_charge(idempotency_key=str(order.id), amount=order.subtotal).outcome == ChargeOutcome.APPROVED
    return order


def stray_charge() -> str:
    key = f"stray-{uuid.uuid4()}"
    assert payment_charge(idempotency_key=key, amount=Decimal("5.00")).outcome == ChargeOutcome.APPROVED
    return key


def watermark() -> str:
    return PaymentAuditWatermark.objects.get(name=AUDIT).charge_id


@pytest.fixture
def provider(payment_provider, settings):
    """The worker's provider, its ledger shared with earlier tests: the audit starts after their charges."""
    settings.RESILIENCE_POLICIES = {"paymentService": FAST_RETRIES}
    PaymentAuditWatermark.objects.update_or_create(name=AUDIT, defaults={"charge_id": payment_provider.last_charge_id() or ""})
    return payment_provider


def provider_healed(provider) -> None:
    """Faults off, and the breaker they opened closed again."""
    provider.faults_reset()
    shared_state_reset()


def test_a_run_reads_only_what_was_charged_since_the_last_one(provider):
    """Given 20,000 charges the audit has been through, a run reads one page: the 3 charges made since."""
    provider.http.post("/_seed", json={"count": 20_000, "amount": 1000}).raise_for_status()
    PaymentAuditWatermark.objects.filter(name=AUDIT).update(charge_id=provider.last_charge_id())
    paid, fulfilled = charged("PAID"), charged("FULFILLED")
    stray = stray_charge()
    unmatched_before = counter("payment_unmatched_charges_total", action="refunded")

    report = audit()

    assert (report.pages, report.charges, report.refunded, report.stopped) == (1, 3, 1, None)
    assert provider.charge(stray)["refunded"] is True
    assert provider.charge(str(paid.id))["refunded"] is provider.charge(str(fulfilled.id))["refunded"] is False
    assert watermark() == provider.charge(stray)["id"]
    assert counter("payment_unmatched_charges_total", action="refunded") == unmatched_before + 1
    again = audit()
    assert (again.pages, again.charges, again.refunded) == (1, 0, 0)


def test_the_watermark_stops_before_a_charge_within_the_grace_period(provider):
    before = watermark()
    stray = stray_charge()

    report = audit(grace_seconds=3600)

    assert (report.charges, report.refunded, report.stopped) == (0, 0, Stop.YOUNG)
    assert watermark() == before and provider.charge(stray)["refunded"] is False


def test_a_charge_of_an_order_still_in_payment_holds_the_watermark_until_the_order_settles(provider):
    paid = charged("PAID")
    in_payment = charged("PROCESSING")
    stray = stray_charge()

    report = audit()

    assert (report.charges, report.refunded, report.stopped) == (1, 0, Stop.UNSETTLED)
    assert watermark() == provider.charge(str(paid.id))["id"]
    assert provider.charge(stray)["refunded"] is False  # behind the unsettled one: next time
    Order.objects.filter(id=in_payment.id).update(status="PAID")
    report = audit()
    assert (report.charges, report.refunded, report.stopped) == (2, 1, None)
    assert provider.charge(str(in_payment.id))["refunded"] is False and provider.charge(stray)["refunded"] is True


def test_a_charge_whose_order_stays_in_payment_past_the_wait_is_skipped_and_counted(provider):
    in_payment = charged("PROCESSING")
    stray = stray_charge()

    report = audit(unsettled_wait_seconds=0)

    assert (report.charges, report.skipped, report.refunded, report.stopped) == (2, 1, 1, None)
    assert provider.charge(str(in_payment.id))["refunded"] is False  # never refunded under an order that may be paid
    assert watermark() == provider.charge(stray)["id"]


def test_a_run_out_of_time_resumes_where_it_stopped(provider):
    strays = [stray_charge() for _ in range(5)]

    first = audit(page_size=2, time_budget_seconds=0)

    # One page, then the budget is spent: the next run goes on from the watermark.
    assert (first.pages, first.charges, first.refunded, first.stopped) == (1, 2, 2, Stop.BUDGET)
    assert [provider.charge(key)["refunded"] for key in strays] == [True, True, False, False, False]
    rest = audit(page_size=2)
    assert (rest.charges, rest.refunded, rest.stopped) == (3, 3, None)
    assert all(provider.charge(key)["refunded"] for key in strays)


def test_a_refund_the_provider_cannot_take_now_holds_the_watermark_until_it_can(provider):
    before = watermark()
    stray = stray_charge()
    provider.faults(error_rate=1.0)  # every POST answers 502: the refund cannot be made

    report = audit()

    assert (report.charges, report.failed, report.refunded, report.stopped) == (0, 1, 0, Stop.REFUND_PENDING)
    assert watermark() == before
    provider_healed(provider)
    report = audit()
    assert (report.charges, report.refunded, report.stopped) == (1, 1, None)
    assert provider.charge(stray)["refunded"] is True


def test_charges_of_cancelled_and_failed_orders_are_refunded_once_and_paid_ones_kept(provider):
    paid, cancelled, failed = charged("PAID"), charged("CANCELLED"), charged("FAILED")
    never_charged = OrderFactory(status="CANCELLED")

    report = audit()
    again = audit()

    assert (report.charges, report.refunded, again.charges, again.refunded) == (3, 2, 0, 0)
    assert provider.charge(str(paid.id))["refunded"] is False
    for order in (cancelled, failed):
        assert provider.charge(str(order.id))["refunded"] is True
        payment = PaymentTransaction.objects.get(order=order)
        assert (payment.status, payment.refund_reason) == ("REFUNDED", "payment audit: charge without a PAID order")
        assert OutboxEvent.objects.filter(aggregate_id=str(order.id), event_type="PAYMENT_REFUNDED").count() == 1
    assert not PaymentTransaction.objects.filter(order=never_charged).exists()


def test_a_refund_that_keeps_failing_is_flagged_for_a_human_and_the_watermark_passes_it(provider, settings):
    # A breaker that stays closed, so each run meets the failing refunds themselves (and can list the charges).
    settings.RESILIENCE_POLICIES = {"paymentService": {**FAST_RETRIES, "breaker": {"minimum_calls": 100, "window_size": 100}}}
    order = charged("CANCELLED")
    provider.faults(error_rate=1.0)  # every refund request gets a 5xx
    flagged_before = counter("payment_unmatched_charges_total", action="flagged")
    failed_before = counter("payment_refunds_total", outcome="failed")

    for _ in range(2):
        run = audit(max_attempts=2)
        assert (run.failed, run.charges, run.stopped) == (1, 0, Stop.REFUND_PENDING)
        Order.objects.filter(id=order.id).update(reconcile_next_at=None)  # its backoff has passed
    report = audit(max_attempts=2)

    assert (report.flagged, report.failed, report.charges, report.stopped) == (1, 0, 1, None)
    order.refresh_from_db()
    assert order.flagged_at is not None and "did not refund" in order.flag_reason
    assert order.reconcile_attempts == 2
    assert provider.charge(str(order.id))["refunded"] is False  # the human's now
    assert watermark() == provider.charge(str(order.id))["id"]
    assert counter("payment_unmatched_charges_total", action="flagged") == flagged_before + 1
    assert counter("payment_refunds_total", outcome="failed") == failed_before + 2
    assert audit(max_attempts=2).flagged == 0  # flagged once, then left to the human


def test_a_superuser_moves_the_watermark_back_in_the_admin_and_the_audit_reads_again_without_refunding_twice(
    provider, admin_client
):
    before = watermark()
    stray = stray_charge()
    assert audit().refunded == 1

    response = admin_client.post(f"/admin/orders/paymentauditwatermark/{AUDIT}/change/", {"charge_id": before})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert watermark() == before
    report = audit()
    assert (report.charges, report.refunded) == (1, 0)  # read again; the provider says it is refunded already
    assert watermark() == provider.charge(stray)["id"]
