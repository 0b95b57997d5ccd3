"""The payment ledger check: the provider's charges, net of refunds, against what each order says it was paid.

An order is owed its total when PAID or FULFILLED and nothing otherwise.
`ledger_judge` judges one order (or one key that names no order) against
its charges, and `ledger_compare` every order and every charge; both are
pure, so what counts as a mismatch is tested without a provider.
`payments_ledger_check` reads both sides: every charge the provider holds
(`payment_charges_page`, its whole history, oldest first) and the orders
they name, plus every order that says it was paid. `manage.py
payments_ledger_check` prints what it finds and the drills
(ops/drills/report.py) count each mismatch as a violation.

A charge belongs to the order its idempotency key names (the platform
charges under the order id), read as a UUID, so a key spelled differently
for the same order (no hyphens, upper case) still counts against that order.
"""
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from itertools import chain

from orders.models import UNSETTLED_STATUSES, Order, OrderStatus
from payments.gateway import ProviderCharge, payment_charges_page

PAID_STATUSES = frozenset({OrderStatus.PAID, OrderStatus.FULFILLED})
# Charges asked of the provider per page (its maximum).
PAGE_SIZE = 1000
# Orders read per query when looking up the orders the charges name.
ORDERS_PER_QUERY = 2000
ZERO = Decimal("0.00")
# Charge ids shown per mismatch.
IDS_SHOWN = 5


class MismatchKind(str, Enum):
    CHARGED_NOT_PAID = "charged, not paid"
    CHARGE_WITHOUT_ORDER = "charge without an order"
    PAID_WITHOUT_CHARGE = "paid, no charge"
    DOUBLE_CHARGE = "double charge"
    AMOUNT_DIFFERS = "amount differs"


@dataclass(frozen=True)
class LedgerOrder:
    """What an order says about its payment."""

    id: uuid.UUID
    order_number: str
    status: str
    total: Decimal


@dataclass
class KeyCharges:
    """The provider's charges under one order (or one key naming none), summed as they are read."""

    count: int = 0
    live: int = 0  # succeeded and not refunded
    refunded: int = 0
    held: Decimal = ZERO  # what the live ones took
    newest: datetime | None = None
    ids: list[str] = field(default_factory=list)  # the first few, to show

    def add(self, charge: ProviderCharge) -> None:
        self.count += 1
        self.newest = charge.created if self.newest is None else max(self.newest, charge.created)
        if len(self.ids) < IDS_SHOWN:
            self.ids.append(charge.id)
        if charge.refunded:
            self.refunded += 1
        elif charge.status == "succeeded":
            self.live += 1
            self.held += charge.amount


NO_CHARGES = KeyCharges()


@dataclass(frozen=True)
class LedgerEntry:
    """One order (or one key naming no order) whose money does not add up, or that is still in payment."""

    key: str
    order: LedgerOrder | None
    charges: KeyCharges
    kind: MismatchKind | None = None  # None: the order is still in payment, not judged

    def line(self) -> str:
        what = self.kind.value if self.kind is not None else "in payment"
        if self.order is None:
            subject = f"key {self.key} (no such order)"
        else:
            subject = f"order {self.order.order_number} ({self.order.status}, total {self.order.total})"
        charges = self.charges
        held = f"provider holds {charges.held} in {charges.live} charge(s)" + (f", {charges.refunded} refunded" if charges.refunded else "")
        ids = ", ".join(charges.ids) + (", ..." if charges.count > len(charges.ids) else "")
        return f"{what}: {subject}: {held}" + (f" [{ids}]" if ids else "")


@dataclass
class LedgerReport:
    charges: int = 0  # succeeded charges compared (refunded ones included)
    refunded: int = 0
    orders: int = 0  # orders judged
    mismatches: list[LedgerEntry] = field(default_factory=list)
    in_payment: list[LedgerEntry] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(entry.kind for entry in self.mismatches)

    def summary(self) -> str:
        counts = self.counts
        kinds = ", ".join(f"{counts[kind]} {kind.value}" for kind in MismatchKind if counts[kind])
        return (
            f"ledger: {self.charges} charges ({self.refunded} refunded), {self.orders} orders compared, "
            f"{len(self.in_payment)} still in payment (not judged); "
            f"{len(self.mismatches)} mismatches" + (f" ({kinds})" if kinds else "")
        )

    def lines(self) -> list[str]:
        return [entry.line() for entry in self.mismatches + self.in_payment]


def order_id_of(idempotency_key: str) -> uuid.UUID | None:
    """The order a charge's idempotency key names (the platform charges under the order id), if any."""
    try:
        return uuid.UUID(idempotency_key)
    except ValueError:
        return None


def order_key(idempotency_key: str) -> str:
    """The order a charge's key names (its UUID, normalised), or the key itself when it names none."""
    order_id = order_id_of(idempotency_key)
    return idempotency_key if order_id is None else str(order_id)


def ledger_totals(charges: Iterable[ProviderCharge]) -> dict[str, KeyCharges]:
    """Sum the charges per order they name (see `order_key`)."""
    totals: dict[str, KeyCharges] = {}
    for charge in charges:
        totals.setdefault(order_key(charge.idempotency_key), KeyCharges()).add(charge)
    return totals


def ledger_judge(*, key: str, order: LedgerOrder | None, charges: KeyCharges) -> LedgerEntry | None:
    """Judge one order (or a key that names none) against its charges; None when its money adds up."""

    def entry(kind: MismatchKind | None) -> LedgerEntry:
        return LedgerEntry(key=key, order=order, charges=charges, kind=kind)

    if order is None:
        return entry(MismatchKind.CHARGE_WITHOUT_ORDER) if charges.held else None
    if order.status in UNSETTLED_STATUSES:
        return entry(None)
    if order.status not in PAID_STATUSES:
        return entry(MismatchKind.CHARGED_NOT_PAID) if charges.held else None
    if charges.live > 1:
        return entry(MismatchKind.DOUBLE_CHARGE)
    if not charges.held:
        return entry(MismatchKind.PAID_WITHOUT_CHARGE)
    return entry(MismatchKind.AMOUNT_DIFFERS) if charges.held != order.total else None


def ledger_compare(*, totals: Mapping[str, KeyCharges], orders: Iterable[LedgerOrder]) -> LedgerReport:
    """Judge every order of `orders`, and every key of `totals` that names none of them.

    `orders` holds at least every order a key names and every order that
    says it was paid or is still in payment: an order left out is one with
    nothing to compare.
    """
    report = LedgerReport(
        charges=sum(charges.count for charges in totals.values()),
        refunded=sum(charges.refunded for charges in totals.values()),
    )
    judged: set[str] = set()
    for order in orders:
        key = str(order.id)
        judged.add(key)
        report.orders += 1
        _add(report, ledger_judge(key=key, order=order, charges=totals.get(key, NO_CHARGES)))
    for key, charges in totals.items():
        if key not in judged:
            _add(report, ledger_judge(key=key, order=None, charges=charges))
    return report


def _add(report: LedgerReport, entry: LedgerEntry | None) -> None:
    if entry is not None:
        (report.in_payment if entry.kind is None else report.mismatches).append(entry)


# --- reading both sides ---------------------------------------------------------------------


def provider_charges() -> Iterator[ProviderCharge]:
    """Every charge the provider holds, oldest first, a page at a time (raises PaymentProviderUnavailable)."""
    cursor: str | None = None
    while True:
        page = payment_charges_page(starting_after=cursor, limit=PAGE_SIZE)
        yield from page.charges
        if not page.has_more or not page.charges:
            return
        cursor = page.charges[-1].id


FIELDS = ("id", "order_number", "status", "subtotal", "created_at")


def _orders(queryset) -> Iterator[tuple[LedgerOrder, datetime]]:
    for order_id, order_number, status, total, created_at in queryset.values_list(*FIELDS).iterator(chunk_size=ORDERS_PER_QUERY):
        yield LedgerOrder(id=order_id, order_number=order_number, status=status, total=total), created_at


def _orders_named(keys: list[str]) -> Iterator[tuple[LedgerOrder, datetime]]:
    ids = [key for key in keys if order_id_of(key) is not None]
    for start in range(0, len(ids), ORDERS_PER_QUERY):
        yield from _orders(Order.objects.filter(id__in=ids[start : start + ORDERS_PER_QUERY]))


def payments_ledger_check(*, since: datetime | None = None) -> LedgerReport:
    """Compare the provider's whole ledger with the orders (raises PaymentProviderUnavailable).

    Memory holds one small sum per charged order, not the charges. With
    `since`, only orders created since then are judged, and a key naming no
    order only when it was charged since then: a drill's own window.
    """
    totals = ledger_totals(provider_charges())
    named = {str(order.id): (order, created) for order, created in _orders_named(sorted(totals))}

    def inside(moment: datetime | None) -> bool:
        return since is None or (moment is not None and moment >= since)

    # A key judged here either names an order of the window or names no order and was charged in it.
    window = {
        key: charges for key, charges in totals.items() if inside(named[key][1] if key in named else charges.newest)
    }
    claimed = Order.objects.filter(status__in=[*PAID_STATUSES, *UNSETTLED_STATUSES])
    if since is not None:
        claimed = claimed.filter(created_at__gte=since)
    orders = chain(
        (order for order, created in named.values() if inside(created)),
        (order for order, _ in _orders(claimed) if str(order.id) not in named),
    )
    return ledger_compare(totals=window, orders=orders)
