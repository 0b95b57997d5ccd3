"""The drill report's money and stock invariants can fail: planted defects, the real provider and a broker of the test's own."""
import time
from datetime import UTC, datetime

import pytest

from ops.drills import report as report_module
from ops.drills.report import DrillReport, report_build
from orders.models import Order, OrderItem
from payments.gateway import ChargeOutcome, payment_charge
from tests.factories import OrderFactory, ProductFactory

pytestmark = pytest.mark.django_db


def order_holding(product, quantity: int, status: str) -> Order:
    order = OrderFactory(status=status, subtotal=product.price * quantity)
    OrderItem.objects.create(
        order=order, product_id=product.id, product_sku=product.sku, product_name=product.name, quantity=quantity,
        price_snapshot=product.price, subtotal=product.price * quantity,
    )  # fmt: skip
    return order


def build(broker, since: datetime, stock_before: dict) -> DrillReport:
    report = DrillReport(scenario="planted", started_at=since.timestamp())
    report_build(report, results=[], stock_before=stock_before, bootstrap_servers=[broker.bootstrap], since=since)
    return report


def charge(order: Order, key: str | None = None) -> None:
    assert payment_charge(idempotency_key=key or str(order.id), amount=order.subtotal).outcome == ChargeOutcome.APPROVED


def test_a_double_charge_counts_as_paid_twice_and_a_charged_failed_order_as_a_ledger_mismatch(broker, payment_provider):
    since = datetime.now(UTC)
    time.sleep(0.01)  # the provider stamps charges with the same clock: the window starts strictly before them
    doubled, failed = OrderFactory(status="PAID"), OrderFactory(status="FAILED")
    charge(doubled)
    charge(doubled, key=doubled.id.hex)  # the same order under a key spelled another way
    charge(failed)  # an unknown outcome recorded as a decline while the charge went through

    report = build(broker, since, stock_before={})

    assert report.paid_twice == [doubled.order_number]
    assert len(report.ledger_mismatches) == 2
    assert {line.partition(":")[0] for line in report.ledger_mismatches} == {"double charge", "charged, not paid"}
    assert "1 orders were paid twice" in report.violations
    assert "2 ledger mismatches between the provider's charges and the orders" in report.violations
    assert "  ledger           ledger: 3 charges (0 refunded), 2 orders compared" in report.render()


def test_a_failed_order_that_gave_its_stock_back_holds_none_and_a_paid_one_holds_its_items(broker, payment_provider):
    product = ProductFactory(inventory_quantity=100)
    stock_before = {product.id: 100}
    since = datetime.now(UTC)
    paid = order_holding(product, 2, "PAID")
    charge(paid)
    order_holding(product, 3, "FAILED")  # declined; its 3 units are back on sale
    product.inventory_quantity = 98
    product.save()

    report = build(broker, since, stock_before=stock_before)

    assert report.stock_mismatches == [] and report.passed, report.violations
    product.inventory_quantity = 95  # the FAILED order's units never came back
    product.save()
    kept = build(broker, since, stock_before=stock_before)
    assert kept.stock_mismatches == [f"{product.id}: before 100, now 95, held by orders 2"]
    assert "1 products' stock does not add up" in kept.violations


def test_a_ledger_that_cannot_be_read_is_a_violation_not_a_pass(broker, payment_provider, monkeypatch):
    monkeypatch.setattr(report_module, "LEDGER_WAIT_SECONDS", 0.0)
    since = datetime.now(UTC)
    payment_provider.kill()  # the fixture starts it again afterwards

    report = build(broker, since, stock_before={})

    assert report.ledger_summary == "" and not report.passed
    assert [v for v in report.violations if v.startswith("the provider's ledger could not be read: ")], report.violations
    assert "  ledger           not read" in report.render()
