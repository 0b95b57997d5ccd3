"""The soak's checker on a small run written by hand: clean as it stands, and each check failing on the defect it is for.

Unit tests: no platform, only a history and read-backs in the shapes
`ops.soak.history` and `ops.soak.readback` write. The real runs judged by the
same checker are in test_soak.py (a clean short soak) and
test_soak_planted.py (defects planted in a real platform).
"""
import copy
from collections.abc import Callable

import pytest

from ops.soak.certificate import certificate_build
from ops.soak.history import FaultRecord, HistoryData, RequestRecord, RunEnd, RunRecord
from ops.soak.readback import ReadBack
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401 (no Redis needed)

pytestmark = pytest.mark.unit

T0 = 1_800_000_000.0
PRODUCT = "11111111-1111-1111-1111-111111111111"
PAID, CANCELLED = "aaaaaaaa-0000-0000-0000-000000000001", "aaaaaaaa-0000-0000-0000-000000000002"
POISON = "00000000ffee"


def _request(operation: str, key: str, outcome: str = "acknowledged", *, attempt: int = 1, number: str | None = None, status: int = 201):
    return RequestRecord(operation, key, attempt, T0 + 1, T0 + 1.1, outcome, status, number)


def _row(row_id: int, order_id: str, event_type: str, topic: str, payment_status: str | None = None) -> dict:
    return {
        "id": row_id, "event_id": f"e{row_id}", "aggregate_id": order_id, "topic": topic, "event_type": event_type,
        "status": "PUBLISHED", "attempts": 0, "payment_status": payment_status, "created_at": T0 + row_id, "published_at": T0 + row_id + 0.1,
    }  # fmt: skip


def _charge(charge_id: str, key: str, *, refunded: bool = False) -> dict:
    return {"id": charge_id, "key": key, "amount": "10.00", "status": "succeeded", "refunded": refunded, "created_at": T0 + 3}


def _record(offset: int, row: dict) -> dict:
    event = {"eventId": row["event_id"], "eventType": row["event_type"], "orderId": row["aggregate_id"], "status": row["payment_status"]}
    return {"partition": 1, "offset": offset, "timestamp": T0 + offset, "key": row["aggregate_id"], "event": event, "value_hex": None}


DEAD_LETTER = {
    "id": 1, "original_topic": "orders.created", "original_partition": 0, "original_offset": 9, "key_hex": "aa", "value_hex": POISON,
    "event": None, "exception_class": "PoisonMessage", "resolved": False,
}  # fmt: skip


def clean_run() -> tuple[HistoryData, ReadBack]:
    """Two customers: k-1 paid, k-2 cancelled before its payment; one poison message dead-lettered; one fault."""
    run = RunRecord(
        seed=1, rate=1.0, minutes=1.0, started_at=T0, load_seconds=60, quiet_seconds=30, settle_within_seconds=60,
        key_prefix="k", customer_domain="soak.invalid", fault_kinds=["consumer-kill"], excluded_kinds={}, schedule=[],
        stock_before={PRODUCT: 100},
    )  # fmt: skip
    history = HistoryData(
        run=run,
        requests=[
            _request("cart", "k-1", status=200), _request("checkout", "k-1", number="ORD-1"),
            _request("cart", "k-2", status=200), _request("checkout", "k-2", number="ORD-2"),
            _request("cancel", "k-2", number="ORD-2", status=200),
        ],
        faults=[FaultRecord("poison-burst", 5, 0, T0 + 5, T0 + 6, facts={"poison": [["not-json", "aa", POISON]]})],
        end=RunEnd(load_ended_at=T0 + 60, last_healed_at=T0 + 6, settled_at=T0 + 61),
    )  # fmt: skip
    order = {"subtotal": "10.00", "created_at": T0 + 1, "updated_at": T0 + 2, "reconcile_attempts": 0, "flagged": False, "items": [[PRODUCT, 1]]}
    orders = [
        {**order, "id": PAID, "number": "ORD-1", "email": "k-1@soak.invalid", "correlation_id": "k-1-1", "status": "PAID", "payment_status": "SUCCESS"},
        {**order, "id": CANCELLED, "number": "ORD-2", "email": "k-2@soak.invalid", "correlation_id": "k-2-1", "status": "CANCELLED",
         "payment_status": "PENDING"},
    ]
    outbox = [
        _row(1, PAID, "ORDER_CREATED", "orders.created"),
        _row(2, CANCELLED, "ORDER_CREATED", "orders.created"),
        _row(3, PAID, "PAYMENT_COMPLETED", "payments.completed", "SUCCESS"),
    ]
    readback = ReadBack(
        read_at=T0 + 70,
        orders=orders,
        outbox=outbox,
        processed_events=[
            {"event_id": "e1", "event_type": "ORDER_CREATED", "topic": "orders.created", "outcome": "PROCESSED"},
            {"event_id": "e2", "event_type": "ORDER_CREATED", "topic": "orders.created", "outcome": "SKIPPED"},
        ],
        dead_letters=[DEAD_LETTER],
        stock={PRODUCT: 99},  # the cancelled order gave its unit back
        ledger=[_charge("ch_1", PAID)],
        topics={"orders.created": [_record(0, outbox[0]), _record(1, outbox[1])], "payments.completed": [_record(0, outbox[2])]},
    )
    return history, readback


def _order(readback: ReadBack, number: str) -> dict:
    return next(order for order in readback.orders if order["number"] == number)


def _lose_paid_order(history, readback):
    readback.orders = [order for order in readback.orders if order["number"] != "ORD-1"]


def _double_paid_order(history, readback):
    readback.orders.append({**_order(readback, "ORD-1"), "id": "aaaaaaaa-0000-0000-0000-000000000009", "number": "ORD-9"})


def _order_without_request(history, readback):
    history.requests = [request for request in history.requests if not (request.key == "k-1" and request.operation == "checkout")]


def _foreign_order(history, readback):
    readback.orders.append({**_order(readback, "ORD-2"), "id": "bbbbbbbb-0000-0000-0000-000000000001", "number": "ORD-7", "email": "x@y.z"})


def _refused_checkout_became_order(history, readback):
    history.requests = [request for request in history.requests if request.key != "k-1"]
    history.requests.append(_request("checkout", "k-1", "refused", status=409))


def _timed_out_checkout_became_two_orders(history, readback):
    history.requests = [request for request in history.requests if request.key != "k-1"]
    history.requests.append(_request("checkout", "k-1", "timed_out", status=None))
    readback.orders.append({**_order(readback, "ORD-1"), "id": "aaaaaaaa-0000-0000-0000-000000000009", "number": "ORD-9"})


def _cancel_acknowledged_but_paid(history, readback):
    history.requests.append(_request("cancel", "k-1", number="ORD-1", status=200))


def _order_stranded(history, readback):
    _order(readback, "ORD-1")["status"] = "PROCESSING"


def _order_settled_late(history, readback):
    _order(readback, "ORD-1")["updated_at"] = T0 + 600


def _row_unpublished(history, readback):
    readback.outbox[1]["status"] = "PENDING"


def _second_payment_completed(history, readback):
    second = _row(4, PAID, "PAYMENT_COMPLETED", "payments.completed", "SUCCESS")
    readback.outbox.append(second)
    readback.topics["payments.completed"].append(_record(1, second))


def _payment_completed_for_cancelled(history, readback):
    readback.outbox.append(_row(4, CANCELLED, "PAYMENT_COMPLETED", "payments.completed", "FAILED"))


def _order_created_not_processed(history, readback):
    readback.processed_events = readback.processed_events[1:]


def _published_row_not_on_kafka(history, readback):
    readback.topics["payments.completed"] = []


def _events_out_of_order(history, readback):
    refund = _row(4, PAID, "PAYMENT_REFUNDED", "payments.completed", "REFUNDED")
    readback.outbox.append(refund)
    readback.topics["payments.completed"] = [_record(0, refund), _record(1, readback.outbox[2])]


def _charge_kept_for_cancelled(history, readback):
    readback.ledger.append(_charge("ch_2", CANCELLED))


def _charged_twice(history, readback):
    readback.ledger.append(_charge("ch_2", PAID))


def _charge_for_nobody(history, readback):
    readback.ledger.append(_charge("ch_2", "cccccccc-0000-0000-0000-000000000001"))


def _stock_lost(history, readback):
    readback.stock[PRODUCT] = 97


def _order_dead_lettered(history, readback):
    event = {"eventType": "ORDER_CREATED", "orderId": PAID}
    readback.dead_letters.append({**DEAD_LETTER, "id": 2, "value_hex": "7b7d", "event": event, "exception_class": "IntegrityError"})


def _topic_unreadable(history, readback):
    readback.unreadable["payments.completed"] = "Kafka did not answer"


DEFECTS: dict[str, tuple[Callable, str]] = {
    "lost": (_lose_paid_order, "acknowledged"),
    "duplicated": (_double_paid_order, "acknowledged"),
    "unrequested": (_order_without_request, "requested"),
    "foreign": (_foreign_order, "requested"),
    "refused-became-order": (_refused_checkout_became_order, "unanswered"),
    "timed-out-became-two": (_timed_out_checkout_became_two_orders, "unanswered"),
    "cancel-ignored": (_cancel_acknowledged_but_paid, "cancels"),
    "stranded": (_order_stranded, "settled"),
    "late": (_order_settled_late, "settled"),
    "unpublished": (_row_unpublished, "settled"),
    "paid-twice": (_second_payment_completed, "events"),
    "cancelled-paid": (_payment_completed_for_cancelled, "events"),
    "not-processed": (_order_created_not_processed, "events"),
    "not-on-kafka": (_published_row_not_on_kafka, "delivery"),
    "out-of-order": (_events_out_of_order, "delivery"),
    "charged-for-cancelled": (_charge_kept_for_cancelled, "ledger"),
    "charged-twice": (_charged_twice, "ledger"),
    "charge-for-nobody": (_charge_for_nobody, "ledger"),
    "stock": (_stock_lost, "stock"),
    "dead-lettered": (_order_dead_lettered, "dead-letters"),
    "unreadable": (_topic_unreadable, "events"),
}


def test_a_clean_run_gets_a_clean_certificate():
    certificate = certificate_build(*clean_run())

    assert certificate.clean, certificate.render()
    assert certificate.figures["lost"] == certificate.figures["duplicated"] == certificate.figures["stranded"] == 0
    assert certificate.figures["statuses"] == {"PAID": 1, "CANCELLED": 1}


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_check_reports_the_defect_it_is_for(defect):
    history, readback = copy.deepcopy(clean_run())
    plant, check = DEFECTS[defect]
    plant(history, readback)

    certificate = certificate_build(history, readback)

    failed = {finding.name for finding in certificate.checks if not finding.passed}
    assert not certificate.clean
    assert check in failed, certificate.render()


def test_a_broker_loss_excuses_the_events_published_before_it_but_not_after():
    history, readback = copy.deepcopy(clean_run())
    readback.topics["payments.completed"] = []  # PaymentCompleted (published at T0 + 3.1) is gone
    history.faults.append(FaultRecord("broker-loss", 3, 0, T0 + 3, T0 + 4))

    assert certificate_build(history, readback).clean

    history.faults[-1] = FaultRecord("broker-loss", 3, 0, T0 + 2, T0 + 3)  # back before the row was published

    assert not certificate_build(history, readback).clean


def test_a_refunded_charge_of_a_cancelled_order_and_a_failed_orders_stock_are_no_mismatch():
    history, readback = copy.deepcopy(clean_run())
    readback.ledger.append(_charge("ch_2", CANCELLED, refunded=True))
    order = next(order for order in readback.orders if order["id"] == PAID)
    order["status"] = "FAILED"  # a FAILED order gives its stock back (orders/services.py order_fail)
    readback.stock[PRODUCT] = 100
    readback.ledger = [charge for charge in readback.ledger if charge["key"] != PAID]
    readback.outbox[2]["payment_status"] = "FAILED"
    readback.topics["payments.completed"][0]["event"]["status"] = "FAILED"

    certificate = certificate_build(history, readback)

    assert certificate.clean, certificate.render()


def test_an_order_paid_after_its_payment_was_in_doubt_counts_as_processed():
    history, readback = copy.deepcopy(clean_run())
    readback.processed_events[0]["outcome"] = "PAYMENT_UNKNOWN"  # recorded in doubt, settled PAID by reconciliation

    assert certificate_build(history, readback).clean

    readback.processed_events[0]["outcome"] = "SKIPPED"

    assert not certificate_build(history, readback).clean


def test_an_interrupted_run_is_never_clean():
    history, readback = clean_run()
    history.end = RunEnd(load_ended_at=T0 + 30, last_healed_at=None, settled_at=None, interrupted=True)

    certificate = certificate_build(history, readback)

    assert not certificate.clean and certificate.interrupted
