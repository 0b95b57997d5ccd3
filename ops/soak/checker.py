"""The soak's checker: the history against the read-backs, and nothing else, into a certificate.

Each check is a function of the evidence (`Evidence`: the history and the
read-backs, indexed) that returns a `Finding`: passed or not, its figures, and
up to `EXAMPLES` of its violations, by order number or key. The certificate
is clean when every check passed and every source it rests on was read.

What is certified (docs/runbook.md, "Soak"):

* every acknowledged checkout is exactly one order (none lost, none doubled),
  the one its answers named; no order without a checkout request; a
  checkout without a definite answer is zero or one order, a refused one none;
* an acknowledged cancel left its order CANCELLED, a refused one did not;
* every order settled (PAID, FULFILLED, FAILED or CANCELLED, and not flagged)
  within the stated time after the last fault healed, and every outbox row
  of the run PUBLISHED (nothing stranded);
* one `OrderCreated` per order, and exactly one distinct `PaymentCompleted`
  per final state (SUCCESS for PAID, FAILED for FAILED, none for CANCELLED),
  at most one `PaymentRefunded`; each PAID or FAILED order's `OrderCreated`
  recorded as processed (or processed with its payment in doubt, settled later);
* every published row is on its topic (unless a broker loss after its
  publication took it), and per order the events on each topic come in the
  outbox's commit order, on one partition;
* the provider's ledger matches the orders (`provider_ledger_check`: the
  payment ledger check's own judgement, orders/ledger.py, on the read-backs;
  the caller may pass another);
* stock is conserved: what the products lost is what their orders hold
  (CANCELLED and FAILED orders gave theirs back);
* no dead letter but the poison the nemesis sent, each exactly once.
"""
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ops.soak.history import HistoryData, Operation, Outcome, RequestRecord
from ops.soak.readback import TOPICS, ReadBack
from orders.ledger import KeyCharges, LedgerOrder, ledger_compare, ledger_totals
from payments.client import ProviderCharge

EXAMPLES = 20
PAID_STATUSES = {"PAID", "FULFILLED"}
FINAL_STATUSES = PAID_STATUSES | {"FAILED", "CANCELLED"}
# Orders that gave their stock back (orders/services.py: order_cancel, order_fail); every other order holds it.
STOCK_RELEASING_STATUSES = {"CANCELLED", "FAILED"}
ORDER_CREATED = "ORDER_CREATED"
PAYMENT_COMPLETED = "PAYMENT_COMPLETED"
PAYMENT_REFUNDED = "PAYMENT_REFUNDED"
EXPECTED_PAYMENT = {"PAID": "SUCCESS", "FULFILLED": "SUCCESS", "FAILED": "FAILED"}
# How a processed-event record of an order that was paid or failed may read: applied, or applied with the
# payment in doubt, which reconciliation then settled from the provider's word (orders/payment_resolution.py).
APPLIED_OUTCOMES = {"PROCESSED", "PAYMENT_UNKNOWN"}
BROKER_LOSS = "broker-loss"


@dataclass
class Finding:
    name: str
    claim: str
    passed: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    count: int = 0  # violations in all (the list keeps the first EXAMPLES)
    unread: list[str] = field(default_factory=list)  # sources it rests on that could not be read

    def violate(self, text: str) -> None:
        self.passed = False
        self.count += 1
        if len(self.violations) < EXAMPLES:
            self.violations.append(text)


class Evidence:
    """The history and the read-backs, indexed the ways the checks ask."""

    def __init__(self, history: HistoryData, readback: ReadBack) -> None:
        self.history, self.readback, self.run = history, readback, history.run
        self.requests: dict[str, dict[str, list[RequestRecord]]] = defaultdict(lambda: defaultdict(list))
        for request in history.requests:
            self.requests[request.key][request.operation].append(request)
        self.orders_by_key: dict[str, list[dict]] = defaultdict(list)
        self.foreign: list[dict] = []  # created during the run by no customer of it
        for order in readback.orders:
            key = self.key_of(order)
            if key is not None:
                self.orders_by_key[key].append(order)
            elif order["created_at"] >= self.run.started_at:
                self.foreign.append(order)
        self.orders = [order for orders in self.orders_by_key.values() for order in orders]
        self.order_ids = {order["id"]: order for order in self.orders}
        self.outbox: dict[str, list[dict]] = defaultdict(list)
        for row in sorted(readback.outbox, key=lambda row: row["id"]):
            if row["aggregate_id"] in self.order_ids:
                self.outbox[row["aggregate_id"]].append(row)
        self.kafka: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for topic, records in readback.topics.items():
            for record in records:
                event = record["event"]
                if event is not None and event.get("orderId") in self.order_ids:
                    self.kafka[(topic, event["orderId"])].append(record)
        self.last_healed_at = history.last_healed_at or self.run.started_at
        # A broker that lost its data took every event published before it was back.
        self.broker_lost_until = max(
            (fault.healed_at for fault in history.faults if fault.name == BROKER_LOSS and fault.healed_at is not None), default=None
        )

    def key_of(self, order: dict) -> str | None:
        local, _, domain = order["email"].partition("@")
        return local if domain == self.run.customer_domain and local.startswith(self.run.key_prefix) else None

    def checkouts(self, key: str) -> list[RequestRecord]:
        return self.requests.get(key, {}).get(Operation.CHECKOUT.value, [])


Check = Callable[[Evidence], Finding]


def _outcomes(requests: list[RequestRecord]) -> set[str]:
    return {request.outcome for request in requests}


def check_acknowledged(evidence: Evidence) -> Finding:
    finding = Finding("acknowledged", "every acknowledged checkout is exactly one order, the one its answers named")
    acknowledged = lost = doubled = 0
    for key, operations in evidence.requests.items():
        answers = [r for r in operations.get(Operation.CHECKOUT.value, []) if r.outcome == Outcome.ACKNOWLEDGED.value]
        if not answers:
            continue
        acknowledged += 1
        orders = evidence.orders_by_key.get(key, [])
        named = {answer.order_number for answer in answers}
        if not orders:
            lost += 1
            finding.violate(f"{key}: acknowledged as {', '.join(sorted(filter(None, named)))} but no order exists (lost)")
        elif len(orders) > 1:
            doubled += 1
            finding.violate(f"{key}: {len(orders)} orders ({', '.join(order['number'] for order in orders)}) (duplicated)")
        elif named != {orders[0]["number"]}:
            finding.violate(f"{key}: answers named {sorted(map(str, named))}, the order is {orders[0]['number']}")
    finding.figures = {"acknowledged": acknowledged, "lost": lost, "duplicated": doubled}
    return finding


def check_requested(evidence: Evidence) -> Finding:
    finding = Finding("requested", "no order without a checkout request")
    for key, orders in evidence.orders_by_key.items():
        if not evidence.checkouts(key):
            for order in orders:
                finding.violate(f"{order['number']}: customer {key} never sent a checkout")
    for order in evidence.foreign:
        finding.violate(f"{order['number']}: created during the run by no customer of it ({order['email']})")
    finding.figures = {"orders": len(evidence.orders), "unrequested": finding.count}
    return finding


def check_unanswered(evidence: Evidence) -> Finding:
    finding = Finding("unanswered", "a checkout without a definite answer is zero or one order; a refused one is none")
    timed_out = refused = became_orders = 0
    for key, operations in evidence.requests.items():
        checkouts = operations.get(Operation.CHECKOUT.value, [])
        outcomes = _outcomes(checkouts)
        if not checkouts or Outcome.ACKNOWLEDGED.value in outcomes:
            continue
        orders = evidence.orders_by_key.get(key, [])
        if Outcome.TIMED_OUT.value in outcomes:
            timed_out += 1
            became_orders += len(orders) == 1
            if len(orders) > 1:
                finding.violate(f"{key}: no definite answer, yet {len(orders)} orders (duplicated)")
        else:
            refused += 1
            if orders:
                finding.violate(f"{key}: every checkout refused, yet order {orders[0]['number']} exists")
    finding.figures = {"timed_out": timed_out, "timed_out_that_became_orders": became_orders, "refused": refused}
    return finding


def check_cancels(evidence: Evidence) -> Finding:
    finding = Finding("cancels", "an acknowledged cancel left its order CANCELLED; a refused one did not")
    acknowledged = refused = 0
    for key, operations in evidence.requests.items():
        cancels = operations.get(Operation.CANCEL.value, [])
        if not cancels:
            continue
        orders = evidence.orders_by_key.get(key, [])
        status = orders[0]["status"] if len(orders) == 1 else None
        outcomes = _outcomes(cancels)
        if Outcome.ACKNOWLEDGED.value in outcomes:
            acknowledged += 1
            if status != "CANCELLED":
                finding.violate(f"{cancels[0].order_number}: cancel acknowledged, order is {status}")
        elif outcomes == {Outcome.REFUSED.value}:
            refused += 1
            if status == "CANCELLED":
                finding.violate(f"{cancels[0].order_number}: cancel refused, order is CANCELLED")
    finding.figures = {"acknowledged": acknowledged, "refused": refused}
    return finding


def check_settled(evidence: Evidence) -> Finding:
    bound = evidence.run.settle_within_seconds
    finding = Finding("settled", f"every order settled within {bound:.0f} s of the last fault healing; every outbox row published")
    deadline = evidence.last_healed_at + bound
    stranded = late = 0
    latest = evidence.last_healed_at
    for order in evidence.orders:
        if order["status"] not in FINAL_STATUSES or order["flagged"]:
            stranded += 1
            finding.violate(f"{order['number']}: {order['status']}{' and flagged for a human' if order['flagged'] else ''} (stranded)")
            continue
        latest = max(latest, order["updated_at"])
        if order["updated_at"] > deadline:
            late += 1
            finding.violate(f"{order['number']}: settled {order['updated_at'] - evidence.last_healed_at:.0f} s after the last fault healed")
    rows = [row for rows in evidence.outbox.values() for row in rows]
    unpublished = [row for row in rows if row["status"] != "PUBLISHED"]
    for row in unpublished:
        finding.violate(f"outbox row {row['id']} ({row['event_type']} of order {evidence.order_ids[row['aggregate_id']]['number']}) is {row['status']}")
    finding.figures = {
        "stranded_orders": stranded, "late_orders": late, "unpublished_rows": len(unpublished),
        "settled_seconds_after_last_heal": round(latest - evidence.last_healed_at, 1),
        "reconciled_orders": sum(1 for order in evidence.orders if order["reconcile_attempts"]),
    }  # fmt: skip
    return finding


def _event_ids(evidence: Evidence, order_id: str, event_type: str) -> dict[str, str | None]:
    """Distinct event ids of one type for an order, outbox and Kafka together, with the payment status each states."""
    found: dict[str, str | None] = {}
    for row in evidence.outbox.get(order_id, []):
        if row["event_type"] == event_type:
            found[row["event_id"]] = row["payment_status"]
    for topic in TOPICS:
        for record in evidence.kafka.get((topic, order_id), []):
            if record["event"]["eventType"] == event_type:
                found.setdefault(record["event"]["eventId"], record["event"].get("status"))
    return found


def check_events(evidence: Evidence) -> Finding:
    finding = Finding("events", "one OrderCreated per order; one PaymentCompleted per final state; at most one PaymentRefunded")
    processed = {event["event_id"]: event["outcome"] for event in evidence.readback.processed_events}
    for order in evidence.orders:
        number, status = order["number"], order["status"]
        created = _event_ids(evidence, order["id"], ORDER_CREATED)
        if len(created) != 1:
            finding.violate(f"{number}: {len(created)} distinct OrderCreated events")
        completed = _event_ids(evidence, order["id"], PAYMENT_COMPLETED)
        expected = EXPECTED_PAYMENT.get(status)
        if expected is not None and list(completed.values()) != [expected]:
            finding.violate(f"{number} is {status}: PaymentCompleted {sorted(map(str, completed.values())) or 'none'}, expected one {expected}")
        elif status == "CANCELLED" and completed:
            finding.violate(f"{number} is CANCELLED yet has {len(completed)} PaymentCompleted")
        if len(_event_ids(evidence, order["id"], PAYMENT_REFUNDED)) > 1:
            finding.violate(f"{number}: more than one PaymentRefunded")
        if status in EXPECTED_PAYMENT and not any(processed.get(event_id) in APPLIED_OUTCOMES for event_id in created):
            finding.violate(f"{number} is {status} but its OrderCreated is not recorded as processed")
    finding.figures = {"orders": len(evidence.orders), "violations": finding.count}
    return finding


def check_delivery(evidence: Evidence) -> Finding:
    finding = Finding("delivery", "every published row is on its topic; per order, each topic's events in commit order, on one partition")
    lost_to_broker = 0
    for order_id, rows in evidence.outbox.items():
        number = evidence.order_ids[order_id]["number"]
        for topic in TOPICS:
            records = evidence.kafka.get((topic, order_id), [])
            on_kafka = {record["event"]["eventId"] for record in records}
            for row in rows:
                if row["topic"] != topic or row["status"] != "PUBLISHED" or row["event_id"] in on_kafka:
                    continue
                if evidence.broker_lost_until is not None and (row["published_at"] or 0) <= evidence.broker_lost_until:
                    lost_to_broker += 1  # published before a broker lost its data
                else:
                    finding.violate(f"{number}: {row['event_type']} {row['event_id']} PUBLISHED but not on {topic}")
            if len({record["partition"] for record in records}) > 1:
                finding.violate(f"{number}: events on {len({r['partition'] for r in records})} partitions of {topic}")
            first_seen: list[str] = []
            for record in sorted(records, key=lambda record: (record["partition"], record["offset"])):
                if record["event"]["eventId"] not in first_seen:
                    first_seen.append(record["event"]["eventId"])
            committed = [row["event_id"] for row in rows if row["topic"] == topic and row["event_id"] in first_seen]
            if first_seen != committed:
                finding.violate(f"{number}: {topic} carries its events out of the outbox's order")
    finding.figures = {"rows_lost_with_a_broker": lost_to_broker}
    return finding


def _provider_charge(charge: dict[str, Any]) -> ProviderCharge:
    return ProviderCharge(
        id=charge["id"], idempotency_key=charge["key"], amount=Decimal(charge["amount"]), status=charge["status"],
        refunded=charge["refunded"], created=datetime.fromtimestamp(charge["created_at"], tz=UTC),
    )  # fmt: skip


def provider_ledger_check(evidence: Evidence) -> Finding:
    """The provider's charges against the orders, judged by the payment ledger check (orders/ledger.py), over the run.

    Judged: every order created since the run began and every charge naming
    no order made since then; an order still in payment is not judged here
    (`settled` reports it).
    """
    finding = Finding("ledger", "the provider's ledger matches the orders")
    started = evidence.run.started_at
    orders = {order["id"]: order for order in evidence.readback.orders}
    charges = [_provider_charge(charge) for charge in evidence.readback.ledger]

    def in_run(key: str, charges: KeyCharges) -> bool:
        order = orders.get(key)
        moment = order["created_at"] if order is not None else charges.newest.timestamp() if charges.newest else 0.0
        return moment >= started

    totals = {key: charges for key, charges in ledger_totals(charges).items() if in_run(key, charges)}
    judged = [
        LedgerOrder(id=uuid.UUID(order["id"]), order_number=order["number"], status=order["status"], total=Decimal(order["subtotal"]))
        for order in orders.values()
        if order["created_at"] >= started
    ]
    report = ledger_compare(totals=totals, orders=judged)
    for entry in report.mismatches:
        finding.violate(entry.line())
    finding.figures = {
        "charges": report.charges, "refunded": report.refunded, "orders_compared": report.orders,
        "in_payment": len(report.in_payment), "mismatches": len(report.mismatches),
    }  # fmt: skip
    return finding


def check_stock(evidence: Evidence) -> Finding:
    finding = Finding("stock", "stock conserved: what each product lost is what its orders hold")
    held: Counter = Counter()
    given_back: Counter = Counter()
    for order in [*evidence.orders, *evidence.foreign]:
        for product_id, quantity in order["items"]:
            (given_back if order["status"] in STOCK_RELEASING_STATUSES else held)[product_id] += quantity
    for product_id, before in evidence.run.stock_before.items():
        after = evidence.readback.stock.get(product_id)
        if after is None or before - after != held[product_id]:
            finding.violate(f"product {product_id}: {before} before, {after} after, {held[product_id]} held by orders")
    finding.figures = {"units_held": sum(held.values()), "units_given_back": sum(given_back.values())}
    return finding


def check_dead_letters(evidence: Evidence) -> Finding:
    finding = Finding("dead-letters", "no dead letter but the nemesis's poison, each exactly once")
    poison = {value for fault in evidence.history.faults for _, _, value in fault.facts.get("poison", [])}
    seen = Counter(letter["value_hex"] for letter in evidence.readback.dead_letters)
    for letter in evidence.readback.dead_letters:
        if letter["value_hex"] not in poison:
            event = letter["event"] or {}
            what = f"{event.get('eventType')} of order {event.get('orderId')}" if event else "undecodable"
            finding.violate(f"dead letter {letter['id']} ({what}, {letter['exception_class']}) is no poison of the run")
    for value in poison:
        if seen[value] != 1:
            finding.violate(f"poison {value[:24]}... dead-lettered {seen[value]} times")
    finding.figures = {"poison_sent": len(poison), "dead_letters": len(evidence.readback.dead_letters)}
    return finding


# Which read-back sources each check rests on.
SOURCES: dict[str, tuple[str, ...]] = {"events": TOPICS, "delivery": TOPICS, "ledger": ("ledger",)}


def certificate_checks(*, ledger_check: Check = provider_ledger_check) -> list[Check]:
    return [
        check_acknowledged, check_requested, check_unanswered, check_cancels, check_settled, check_events, check_delivery,
        ledger_check, check_stock, check_dead_letters,
    ]  # fmt: skip


def findings_take(evidence: Evidence, checks: list[Check]) -> list[Finding]:
    findings = []
    for check in checks:
        finding = check(evidence)
        finding.unread = [source for source in SOURCES.get(finding.name, ()) if source in evidence.readback.unreadable]
        if finding.unread:
            finding.passed = False
        findings.append(finding)
    return findings
