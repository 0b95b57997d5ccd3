"""What the platform holds at the end of a soak: everything the checker judges besides the history.

Read from the platform's own database (the soak runs with the platform's
settings) and its broker: the orders of the run and every order created
since it started, their outbox rows, the processed events, the dead letters,
the stock of the products the run used, the payment provider's ledger, and
`orders.created` and `payments.completed` from their earliest offset. Kept as
plain JSON (`readback.json`), so a certificate can be checked again, or by
hand, without the platform.

The provider's ledger is read by a function the caller may replace
(`LedgerReader`): by default every charge the payment provider holds
(`orders.ledger.provider_charges`, over HTTP) made since the run began,
asked again while the provider or its breaker says no, for a minute.
"""
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import Q

from catalog.models import Product
from deadletters.models import DeadLetter
from messaging.contract.events import ORDERS_CREATED, PAYMENTS_COMPLETED
from messaging.kafka.monitoring import topic_records
from ops.drills.report import LEDGER_WAIT_SECONDS, database_retrying
from orders.ledger import order_id_of, provider_charges
from orders.models import Order, OrderItem, ProcessedEvent
from outbox.models import OutboxEvent
from payments.client import PaymentProviderUnavailable

TOPICS = (ORDERS_CREATED, PAYMENTS_COMPLETED)
# Read-backs start this long before the run, so a clock a little off cannot hide a row.
MARGIN_SECONDS = 60.0
TOPIC_READ_SECONDS = 180.0


def _iso(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@dataclass
class ReadBack:
    read_at: float
    orders: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    processed_events: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    stock: dict[str, int] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    topics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Sources that could not be read: the checker cannot certify what rests on them.
    unreadable: dict[str, str] = field(default_factory=dict)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> "ReadBack":
        return cls(**json.loads(path.read_text()))


LedgerReader = Callable[[datetime], list[dict[str, Any]]]


def provider_ledger(since: datetime) -> list[dict[str, Any]]:
    """The payment provider's charges made since `since` (raises PaymentProviderUnavailable)."""
    return [
        {
            "id": charge.id,
            "key": charge.idempotency_key,
            "amount": str(charge.amount),
            "status": charge.status,
            "refunded": charge.refunded,
            "created_at": charge.created.timestamp(),
        }
        for charge in provider_charges()
        if charge.created >= since
    ]


def _ledger(ledger: LedgerReader, since: datetime) -> list[dict[str, Any]]:
    """Ask for the ledger until it answers: after a payment fault the provider's breaker may be open a while."""
    deadline = time.monotonic() + LEDGER_WAIT_SECONDS
    while True:
        try:
            return ledger(since)
        except PaymentProviderUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def _orders(since: datetime, named: list[str]) -> list[dict[str, Any]]:
    orders = list(Order.objects.filter(Q(created_at__gte=since) | Q(id__in=named)).order_by("created_at"))
    items: dict[str, list[list[Any]]] = {}
    of_orders = OrderItem.objects.filter(Q(order__created_at__gte=since) | Q(order_id__in=named))
    for order_id, product_id, quantity in of_orders.values_list("order_id", "product_id", "quantity"):
        items.setdefault(str(order_id), []).append([str(product_id), quantity])
    return [
        {
            "id": str(order.id),
            "number": order.order_number,
            "email": order.customer_email,
            "correlation_id": order.correlation_id,
            "status": order.status,
            "payment_status": order.payment_status,
            "subtotal": str(order.subtotal),
            "created_at": _iso(order.created_at),
            "updated_at": _iso(order.updated_at),
            "reconcile_attempts": order.reconcile_attempts,
            "flagged": order.flagged_at is not None,
            "items": items.get(str(order.id), []),
        }
        for order in orders
    ]


def _outbox(since: datetime, order_ids: list[str]) -> list[dict[str, Any]]:
    rows = OutboxEvent.objects.filter(Q(created_at__gte=since) | Q(aggregate_id__in=order_ids)).order_by("id")
    return [
        {
            "id": row.id,
            "event_id": str(row.event_id),
            "aggregate_id": row.aggregate_id,
            "topic": row.topic,
            "event_type": row.event_type,
            "status": row.status,
            "attempts": row.attempts,
            "payment_status": row.payload.get("status") if isinstance(row.payload, dict) else None,
            "created_at": _iso(row.created_at),
            "published_at": _iso(row.published_at),
        }
        for row in rows
    ]


def _processed_events(since: datetime) -> list[dict[str, Any]]:
    return [
        {"event_id": str(event_id), "event_type": event_type, "topic": topic, "outcome": outcome}
        for event_id, event_type, topic, outcome in ProcessedEvent.objects.filter(processed_at__gte=since).values_list(
            "event_id", "event_type", "topic", "outcome"
        )
    ]


def _event_fields(value: bytes | None) -> dict[str, Any] | None:
    try:
        payload = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    return {name: payload.get(name) for name in ("eventId", "eventType", "orderId", "status")}


def _dead_letters(since: datetime) -> list[dict[str, Any]]:
    letters = []
    for letter in DeadLetter.objects.filter(created_at__gte=since).order_by("id"):
        value = bytes(letter.value) if letter.value is not None else None
        letters.append(
            {
                "id": letter.id,
                "original_topic": letter.original_topic,
                "original_partition": letter.original_partition,
                "original_offset": letter.original_offset,
                "key_hex": bytes(letter.key).hex() if letter.key is not None else None,
                "value_hex": value.hex() if value is not None else None,
                "event": _event_fields(value),
                "exception_class": letter.exception_class,
                "resolved": letter.resolved_at is not None,
            }
        )
    return letters


def _topic(bootstrap_servers: list[str], topic: str, *, order_ids: set[str], since: float) -> list[dict[str, Any]]:
    """The topic's records from the earliest offset: those of the run's orders, and anything else written since it started."""
    kept = []
    for record in topic_records(bootstrap_servers=bootstrap_servers, topic=topic, since_ms=None, timeout_seconds=TOPIC_READ_SECONDS):
        event = _event_fields(record.value)
        ours = event is not None and event.get("orderId") in order_ids
        if not ours and record.timestamp / 1000 < since:
            continue
        kept.append(
            {
                "partition": record.partition,
                "offset": record.offset,
                "timestamp": record.timestamp / 1000,
                "key": (record.key or b"").decode(errors="replace"),
                "event": event,
                "value_hex": None if event is not None else (record.value or b"").hex(),
            }
        )
    return kept


def readback_take(
    *, since: float, product_ids: list[str], bootstrap_servers: list[str], ledger: LedgerReader = provider_ledger
) -> ReadBack:
    """Read back everything since `since` (unix time). A source that cannot be read is named, not guessed."""
    moment = datetime.fromtimestamp(since - MARGIN_SECONDS, tz=UTC)
    result = ReadBack(read_at=time.time())
    try:
        result.ledger = _ledger(ledger, moment)
    except Exception as error:  # noqa: BLE001 - a provider that cannot be read is reported, not certified
        result.unreadable["ledger"] = repr(error)
    # The orders since then, and any older one a charge of the window names (it is judged with its charges).
    named = [str(order_id) for charge in result.ledger if (order_id := order_id_of(charge["key"])) is not None]
    result.orders = database_retrying(lambda: _orders(moment, named))
    order_ids = [order["id"] for order in result.orders]
    result.outbox = database_retrying(lambda: _outbox(moment, order_ids))
    result.processed_events = database_retrying(lambda: _processed_events(moment))
    result.dead_letters = database_retrying(lambda: _dead_letters(moment))
    result.stock = database_retrying(
        lambda: {str(product_id): quantity for product_id, quantity in Product.objects.filter(id__in=product_ids).values_list("id", "inventory_quantity")}
    )
    for topic in TOPICS:
        try:
            result.topics[topic] = _topic(bootstrap_servers, topic, order_ids=set(order_ids), since=moment.timestamp())
        except ConnectionError as error:
            result.unreadable[topic] = str(error)
    return result
