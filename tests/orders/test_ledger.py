"""What counts as a ledger mismatch: `ledger_judge` and `ledger_compare`, pure, without a provider or a database."""
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from itertools import count

import pytest

from orders.ledger import LedgerOrder, MismatchKind, ledger_compare, ledger_totals
from payments.gateway import ProviderCharge
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit

TOTAL = Decimal("19.99")
MOMENT = datetime(2026, 12, 1, tzinfo=UTC)
_ids = count(1)


def order(status: str, total: Decimal = TOTAL) -> LedgerOrder:
    number = next(_ids)
    return LedgerOrder(id=uuid.uuid4(), order_number=f"ORD-20261201-{number:06d}", status=status, total=total)


def charge(key: str, amount: Decimal = TOTAL, *, status: str = "succeeded", refunded: bool = False) -> ProviderCharge:
    return ProviderCharge(
        id=f"ch_{next(_ids):06x}", idempotency_key=key, amount=amount, status=status, refunded=refunded, created=MOMENT
    )


def compare(charges: list[ProviderCharge], orders: list[LedgerOrder]):
    return ledger_compare(totals=ledger_totals(charges), orders=orders)


def test_every_order_whose_money_adds_up_is_no_mismatch():
    paid, fulfilled, cancelled, failed, declined = (order(s) for s in ("PAID", "FULFILLED", "CANCELLED", "FAILED", "FAILED"))
    charges = [
        charge(str(paid.id)),
        charge(str(fulfilled.id)),
        charge(str(cancelled.id), refunded=True),  # charged, then given back
        charge(str(declined.id), status="failed"),  # the provider said no
    ]

    report = compare(charges, [paid, fulfilled, cancelled, failed, declined])

    assert report.mismatches == [] and report.in_payment == []
    assert (report.charges, report.refunded, report.orders) == (4, 1, 5)
    assert report.summary() == "ledger: 4 charges (1 refunded), 5 orders compared, 0 still in payment (not judged); 0 mismatches"


@pytest.mark.parametrize("status", ["FAILED", "CANCELLED"])
def test_a_charge_kept_for_an_order_that_is_not_paid_is_a_mismatch(status):
    unpaid = order(status)

    [entry] = compare([charge(str(unpaid.id))], [unpaid]).mismatches

    assert entry.kind == MismatchKind.CHARGED_NOT_PAID and entry.order == unpaid
    assert entry.line().startswith(f"charged, not paid: order {unpaid.order_number} ({status}, total 19.99): provider holds 19.99 in 1 charge(s) [ch_")


def test_a_paid_order_without_a_charge_or_with_its_charge_refunded_is_a_mismatch():
    never_charged, refunded = order("PAID"), order("FULFILLED")

    report = compare([charge(str(refunded.id), refunded=True)], [never_charged, refunded])

    assert [(e.kind, e.order) for e in report.mismatches] == [
        (MismatchKind.PAID_WITHOUT_CHARGE, never_charged), (MismatchKind.PAID_WITHOUT_CHARGE, refunded)
    ]  # fmt: skip
    assert report.mismatches[1].line().endswith("provider holds 0.00 in 0 charge(s), 1 refunded [" + report.mismatches[1].charges.ids[0] + "]")


def test_two_charges_for_one_order_are_a_double_charge_even_under_a_key_spelled_differently():
    paid = order("PAID")

    report = compare([charge(str(paid.id)), charge(paid.id.hex.upper())], [paid])

    [entry] = report.mismatches
    assert entry.kind == MismatchKind.DOUBLE_CHARGE and entry.charges.held == 2 * TOTAL and entry.charges.live == 2
    assert "double charge: order" in report.lines()[0]
    assert report.summary().endswith("1 mismatches (1 double charge)")


def test_a_paid_order_charged_another_amount_is_a_mismatch():
    paid = order("PAID")

    [entry] = compare([charge(str(paid.id), Decimal("9.99"))], [paid]).mismatches

    assert entry.kind == MismatchKind.AMOUNT_DIFFERS


def test_a_charge_under_a_key_naming_no_order_is_a_mismatch_unless_refunded():
    report = compare([charge("stray-key"), charge(str(uuid.uuid4())), charge("given-back", refunded=True)], [])

    assert sorted(e.kind for e in report.mismatches) == [MismatchKind.CHARGE_WITHOUT_ORDER] * 2
    assert report.mismatches[0].line().startswith("charge without an order: key stray-key (no such order): provider holds 19.99")


def test_orders_still_in_payment_are_reported_apart_not_judged():
    charged, not_yet = order("PROCESSING"), order("PENDING")

    report = compare([charge(str(charged.id))], [charged, not_yet])

    assert report.mismatches == []
    assert [e.order for e in report.in_payment] == [charged, not_yet]
    assert report.lines()[0].startswith(f"in payment: order {charged.order_number} (PROCESSING, total 19.99): provider holds 19.99")
    assert "2 still in payment (not judged); 0 mismatches" in report.summary()
