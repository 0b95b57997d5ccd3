"""What a drill proves: the invariants, read from the platform itself, and the alerts its Prometheus raised.

Orders, payments and the outbox are read from the platform's database (the
drill runs with the platform's settings), the events from its broker, the
alerts from the run command's Prometheus API. A violated invariant is a line
in `violations`; the drill exits non-zero when there is any.
"""
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests
from django.db import connections
from django.db.models import Sum
from django.db.utils import Error as DatabaseError
from prometheus_client.parser import text_string_to_metric_families

from bench.load import CheckoutResult
from catalog.models import Product
from messaging.contract.events import ORDER_CREATED, ORDERS_CREATED, PAYMENT_COMPLETED, PAYMENTS_COMPLETED
from messaging.kafka.monitoring import topic_values
from orders.ledger import MismatchKind, payments_ledger_check
from orders.models import UNSETTLED_STATUSES, Order, OrderItem, OrderStatus
from outbox.models import OutboxEvent, OutboxStatus
from payments.gateway import PaymentProviderUnavailable

PROBLEM_JSON = "application/problem+json"
# How long the report keeps asking for the provider's ledger: past the paymentService breaker's 30 s open time.
LEDGER_WAIT_SECONDS = 60.0


def database_retrying(read, *, attempts: int = 20, pause_seconds: float = 1.0):
    """Run a read, reconnecting while the database restarts (postgres-restart)."""
    for attempt in range(attempts):
        try:
            return read()
        except DatabaseError:
            connections.close_all()
            if attempt == attempts - 1:
                raise
            time.sleep(pause_seconds)


def stock_snapshot(product_ids: list[str]) -> dict[str, int]:
    return dict(Product.objects.filter(id__in=product_ids).values_list("id", "inventory_quantity"))


def unsettled_counts(*, since: datetime) -> tuple[int, int]:
    """(orders created since `since` not yet terminal, outbox rows PENDING)."""
    orders = Order.objects.filter(created_at__gte=since, status__in=UNSETTLED_STATUSES).count()
    return orders, OutboxEvent.objects.filter(status=OutboxStatus.PENDING).count()


def counter_total(base_url: str, name: str) -> float | None:
    """The sum of a counter's samples on the platform's /metrics now; None when it cannot be read."""
    try:
        answer = requests.get(f"{base_url}/metrics", timeout=10)
        answer.raise_for_status()
    except requests.RequestException:
        return None
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == f"{name}_total"
    )


# --- alerts -----------------------------------------------------------------------


@dataclass
class AlertSeen:
    name: str
    labels: dict[str, str]
    fired_at: float | None  # first firing sample in the drill's window
    firing_at_start: bool
    firing_now: bool

    @property
    def resolved(self) -> bool:
        return self.fired_at is not None and not self.firing_now

    def describe(self, origin: float) -> str:
        shown = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if k not in ("alertname", "alertstate", "severity", "job", "instance"))
        name = f"{self.name}{{{shown}}}" if shown else self.name
        if self.firing_at_start:
            when = "firing since before the drill"
        else:
            when = f"fired +{self.fired_at - origin:.0f}s" if self.fired_at is not None else "pending only"
        return f"{name}: {when}, {'resolved' if self.resolved else 'still firing' if self.firing_now else 'not firing'}"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, **params) -> dict:
        answer = requests.get(f"{self.url}{path}", params=params, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {body}")
        return body["data"]

    def reachable(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def firing_now(self) -> list[dict]:
        return [alert for alert in self._get("/api/v1/alerts")["alerts"] if alert["state"] == "firing"]

    def alerts_seen(self, *, start: float, end: float) -> list[AlertSeen]:
        """Every alert that fired between `start` and `end` (ALERTS series), and whether it still fires."""
        data = self._get(
            "/api/v1/query_range", query='ALERTS{alertstate="firing"}', start=f"{start - 30:.3f}", end=f"{end:.3f}", step="5"
        )
        now = {self._key(alert["labels"]) for alert in self.firing_now()}
        seen = []
        for series in data["result"]:
            labels = {k: v for k, v in series["metric"].items() if k != "__name__"}
            stamps = [float(stamp) for stamp, _ in series["values"]]
            inside = [stamp for stamp in stamps if stamp >= start]
            seen.append(
                AlertSeen(
                    name=labels.get("alertname", "?"),
                    labels=labels,
                    fired_at=min(inside) if inside else None,
                    firing_at_start=any(start - 30 <= stamp <= start for stamp in stamps),
                    firing_now=self._key(labels) in now,
                )
            )
        return sorted(seen, key=lambda alert: (alert.fired_at or 0, alert.name))

    @staticmethod
    def _key(labels: dict) -> tuple:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in ("alertstate", "__name__")))


# --- the report --------------------------------------------------------------------------


@dataclass
class DrillReport:
    scenario: str
    started_at: float
    fault_started_at: float | None = None
    fault_undone_at: float | None = None
    settled_at: float | None = None
    requests: int = 0
    placed: int = 0
    errors: Counter = field(default_factory=Counter)
    non_problem_json: Counter = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    paid_twice: list[str] = field(default_factory=list)
    # The provider's charges against the drill's orders (orders/ledger.py): one line a mismatch.
    ledger_mismatches: list[str] = field(default_factory=list)
    ledger_summary: str = ""
    copies: dict[str, int] = field(default_factory=dict)
    redeliveries_absorbed: float | None = None  # orders_consumer_duplicates_total's increase
    stock_mismatches: list[str] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    first_paid_after_undo: float | None = None
    alerts: list[AlertSeen] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def render(self) -> str:
        def seconds(value: float | None) -> str:
            return f"{value:.1f} s" if value is not None else "n/a"

        drained = self.settled_at - self.fault_undone_at if self.settled_at and self.fault_undone_at else None
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(self.errors.items())) or "none"
        lines = [
            f"== drill {self.scenario}: {'PASS' if self.passed else 'FAIL'}",
            f"  checkouts        {self.requests} sent, {self.placed} placed (201), errors: {errors}",
            f"  orders           {', '.join(f'{s} {n}' for s, n in sorted(self.statuses.items())) or 'none'}",
            f"  lost             {len(self.lost)}{self._few(self.lost)}",
            f"  stuck            {len(self.stuck)}{self._few(self.stuck)}",
            f"  paid twice       {len(self.paid_twice)}{self._few(self.paid_twice)}",
            f"  ledger           {self.ledger_summary or 'not read'}",
            "  event copies     "
            + (", ".join(f"{topic} {count}" for topic, count in sorted(self.copies.items())) or "none")
            + " on the broker; "
            + (f"{self.redeliveries_absorbed:.0f} redeliveries absorbed by the consumer" if self.redeliveries_absorbed is not None else "consumer redeliveries unknown")
            + " (copies allowed, double effects not)",
            f"  stock mismatches {len(self.stock_mismatches)}{self._few(self.stock_mismatches)}",
            f"  non-problem+json {sum(self.non_problem_json.values())}"
            + (f" ({', '.join(f'{k} {v}' for k, v in self.non_problem_json.items())})" if self.non_problem_json else ""),
            (
                f"  recovery         first new order PAID {seconds(self.first_paid_after_undo)} after the fault was undone; "
                f"backlog drained after {seconds(drained)}"
            ),
            "  alerts           " + ("none fired" if not self.alerts else f"{len(self.alerts)} fired during the drill:"),
        ]
        lines += [f"    {alert.describe(self.started_at)}" for alert in self.alerts]
        lines += [f"  ledger: {line}" for line in self.ledger_mismatches[:20]]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  VIOLATED: {violation}" for violation in self.violations]
        return "\n".join(lines)

    @staticmethod
    def _few(items: list[str]) -> str:
        return f" ({', '.join(items[:5])}{', ...' if len(items) > 5 else ''})" if items else ""


def _load_figures(report: DrillReport, results: list[CheckoutResult]) -> set[str]:
    report.requests = len(results)
    numbers = {result.order_number for result in results if result.status == 201 and result.order_number}
    report.placed = len(numbers)
    for result in results:
        if result.error is None:
            continue
        report.errors[result.error.value] += 1
        if result.status is not None and not (result.content_type or "").startswith(PROBLEM_JSON):
            report.non_problem_json[f"{result.status} {result.content_type or 'no content type'}"] += 1
    if report.non_problem_json:
        report.violations.append(f"{sum(report.non_problem_json.values())} error answers were not problem+json")
    return numbers


def _broker_events(bootstrap_servers: list[str], *, since: float) -> dict[str, list[dict]]:
    """The decodable events on the order topics since the drill started, by topic."""
    events: dict[str, list[dict]] = {}
    for topic in (ORDERS_CREATED, PAYMENTS_COMPLETED):
        decoded = []
        for value in topic_values(
            bootstrap_servers=bootstrap_servers, topic=topic, since_ms=int(since * 1000), timeout_seconds=60
        ):
            try:
                payload = json.loads(value or b"")
            except ValueError:
                continue  # poison (ours or a test's): the dead-letter check counts those
            if isinstance(payload, dict):
                decoded.append(payload)
        events[topic] = decoded
    return events


def report_build(
    report: DrillReport,
    *,
    results: list[CheckoutResult],
    stock_before: dict[str, int],
    bootstrap_servers: list[str],
    since: datetime,
) -> None:
    """Fill in the invariants of a finished drill (its load's results, the database, the broker)."""
    numbers = _load_figures(report, results)
    orders = database_retrying(lambda: list(Order.objects.filter(created_at__gte=since)))
    by_number = {order.order_number: order for order in orders}
    report.statuses = Counter(order.status for order in orders)
    report.lost = sorted(numbers - set(by_number))
    if report.lost:
        report.violations.append(f"{len(report.lost)} orders answered 201 but do not exist")
    report.stuck = sorted(order.order_number for order in orders if order.status in UNSETTLED_STATUSES)
    if report.stuck:
        report.violations.append(f"{len(report.stuck)} orders are not terminal after the wait")

    redriven = sum(1 for order in orders if order.reconcile_attempts)
    if redriven:
        report.notes.append(f"{redriven} orders were re-driven by reconciliation")
    order_ids = {str(order.id): order.order_number for order in orders}
    twice = _paid_twice(report, order_ids, bootstrap_servers=bootstrap_servers)
    twice |= _ledger(report, since=since)
    report.paid_twice = sorted(twice)
    if report.paid_twice:
        report.violations.append(f"{len(report.paid_twice)} orders were paid twice")
    _stock(report, stock_before=stock_before, since=since)

    if report.fault_undone_at is not None:
        undone = datetime.fromtimestamp(report.fault_undone_at, tz=UTC)
        paid = [
            order.updated_at
            for order in orders
            if order.created_at >= undone and order.status in (OrderStatus.PAID, OrderStatus.FULFILLED)
        ]
        if paid:
            report.first_paid_after_undo = (min(paid) - undone).total_seconds()


def _paid_twice(report: DrillReport, order_ids: dict[str, str], *, bootstrap_servers: list[str]) -> set[str]:
    """Order numbers with more than one distinct PaymentCompleted event id (outbox table or broker); count copies."""
    completed: dict[str, set[str]] = {}
    for aggregate_id, payload in OutboxEvent.objects.filter(
        event_type=PAYMENT_COMPLETED, aggregate_id__in=list(order_ids)
    ).values_list("aggregate_id", "payload"):
        completed.setdefault(aggregate_id, set()).add(payload["eventId"])
    try:
        events = _broker_events(bootstrap_servers, since=report.started_at)
    except ConnectionError as error:
        events = {}
        report.notes.append(f"events not read from the broker ({error}); the outbox table alone says who was paid")
    for topic, payloads in events.items():
        copies = Counter(payload.get("eventId") for payload in payloads if payload.get("orderId") in order_ids)
        report.copies[topic] = sum(count - 1 for count in copies.values())
        if topic == PAYMENTS_COMPLETED:
            for payload in payloads:
                if payload.get("eventType") == PAYMENT_COMPLETED and payload.get("orderId") in order_ids:
                    completed.setdefault(payload["orderId"], set()).add(payload.get("eventId"))
        if topic == ORDERS_CREATED:
            per_order: dict[str, set] = {}
            for payload in payloads:
                if payload.get("eventType") == ORDER_CREATED and payload.get("orderId") in order_ids:
                    per_order.setdefault(payload["orderId"], set()).add(payload.get("eventId"))
            doubled = [order_ids[order_id] for order_id, ids in per_order.items() if len(ids) > 1]
            if doubled:
                report.violations.append(f"{len(doubled)} orders have more than one OrderCreated event id: {doubled[:5]}")
    return {order_ids[order_id] for order_id, ids in completed.items() if len(ids) > 1}


def _ledger(report: DrillReport, *, since: datetime) -> set[str]:
    """Compare the provider's charges with the drill's orders: each mismatch is a violation; return the double-charged."""
    deadline = time.monotonic() + LEDGER_WAIT_SECONDS
    while True:
        try:
            ledger = database_retrying(lambda: payments_ledger_check(since=since))
            break
        except PaymentProviderUnavailable as error:
            # The paymentService breaker a payment drill opened may still be open: wait out its open time.
            if time.monotonic() > deadline:
                report.violations.append(f"the provider's ledger could not be read: {error}")
                return set()
            time.sleep(5)
    report.ledger_summary = ledger.summary()
    report.ledger_mismatches = [entry.line() for entry in ledger.mismatches]
    if ledger.mismatches:
        report.violations.append(f"{len(ledger.mismatches)} ledger mismatches between the provider's charges and the orders")
    return {entry.order.order_number for entry in ledger.mismatches if entry.kind == MismatchKind.DOUBLE_CHARGE and entry.order}


def _stock(report: DrillReport, *, stock_before: dict[str, int], since: datetime) -> None:
    """Each product's stock now + what the drill's orders still hold = its stock before.

    A CANCELLED or FAILED order gave its stock back; every other order of the
    drill (PAID, FULFILLED, or still in payment) holds its items.
    """
    held = dict(
        OrderItem.objects.filter(order__created_at__gte=since, product_id__in=list(stock_before))
        .exclude(order__status__in=(OrderStatus.CANCELLED, OrderStatus.FAILED))
        .values_list("product_id")
        .annotate(total=Sum("quantity"))
    )
    now = stock_snapshot(list(stock_before))
    for product_id, before in stock_before.items():
        after, taken = now.get(product_id, 0), held.get(product_id, 0)
        if after + taken != before:
            report.stock_mismatches.append(f"{product_id}: before {before}, now {after}, held by orders {taken}")
    if report.stock_mismatches:
        report.violations.append(f"{len(report.stock_mismatches)} products' stock does not add up")
