"""Dead letters of any bytes, against the real consumer process, broker and database."""
import pytest
from django.db import connection

from deadletters.models import DeadLetter
from deadletters.services import dead_letters_replay
from messaging.contract.events import ORDERS_CREATED, ORDERS_CREATED_DLQ
from orders.models import Order
from outbox.models import OutboxEvent
from tests.support import (
    TcpProxy,
    committed_offsets,
    database_url_for_tests,
    header,
    order_record,
    produce,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

GROUP = "order-service-group"
# 0x00, a 4-byte schema id, then Avro bytes (a record of one string and one long).
CONFLUENT_WIRE = b"\x00\x00\x00\x01\xa4" + b"\x0eORD-001" + b"\xac\x02"
# Well over the old text column's comfort, under the broker's 1 MiB message limit.
LARGE_VALUE = bytes(range(256)) * (900_000 // 256) + b"\x00" * (900_000 % 256)

POISON = {
    "nul-value": (b"key-nul-value", b'{"eventType": "ORDER_CREATED"\x00}', [("event_id", b"p-1")]),
    "confluent-wire-format": (b"key-confluent", CONFLUENT_WIRE, [("event_id", b"p-2")]),
    "invalid-utf8": (b"key-invalid", b"\xc3\x28\xa0\xa1\xff\xfe", [("event_id", b"p-3")]),
    "nul-key-and-header": (b"\x00key\x00", b'{"eventType": "ORDER_CREATED"}', [("trace", b"\x00\x01\x02\xff"), ("event_id", b"p-4")]),
    "900-kb": (b"key-large", LARGE_VALUE, [("event_id", b"p-5")]),
}


def _status(order_id) -> str:
    return Order.objects.get(id=order_id).status


def test_any_bytes_are_dead_lettered_exactly_shown_in_the_admin_and_the_partition_moves_on(
    place_order, consumers, broker, admin_client
):
    good = place_order()
    OutboxEvent.objects.filter(id=good.id).delete()  # sent below, after the poison, on the same partition
    names = list(POISON)
    produce(broker.bootstrap, ORDERS_CREATED, [(0, *POISON[name]) for name in names] + [order_record(good, 0)])

    consumer = consumers()

    wait_for(lambda: _status(good.aggregate_id) == "PAID", timeout=90, what="the good order after the poison")
    # Messages of other keys run in parallel: the good order may be paid before every poison is stored.
    wait_for(lambda: DeadLetter.objects.count() == len(names), timeout=60, what="every poison message dead-lettered")
    assert consumer.process.poll() is None
    letters = {letter.original_offset: letter for letter in DeadLetter.objects.all()}
    assert sorted(letters) == list(range(len(names)))
    for offset, name in enumerate(names):
        key, value, headers = POISON[name]
        letter = letters[offset]
        assert (bytes(letter.key), bytes(letter.value)) == (key, value), name
        assert letter.headers == headers, name
        assert "\x00" not in letter.value_preview + letter.key_preview
    dead = {int(header(record, "dlt-original-offset")): record for record in read_topic(broker.bootstrap, ORDERS_CREATED_DLQ)}
    assert sorted(dead) == list(range(len(names)))
    for offset, name in enumerate(names):
        key, value, headers = POISON[name]
        record = dead[offset]
        assert (record.key, record.value) == (key, value), name
        assert [(n, v) for n, v in record.headers if not n.startswith("dlt-")] == headers, name
        assert header(record, "dlt-exception-fqcn") == "orders.processing.PoisonMessage"
    wait_for(
        lambda: committed_offsets(broker.bootstrap, GROUP, ORDERS_CREATED).get(0) == len(names) + 1,
        timeout=10,
        what="the commit past the poison and the good order",
    )

    page = admin_client.get("/admin/deadletters/deadletter/")
    assert page.status_code == 200 and page.context["cl"].result_count == len(names)
    for letter in letters.values():
        change = admin_client.get(f"/admin/deadletters/deadletter/{letter.id}/change/")
        assert change.status_code == 200, letter.original_offset
    assert "\\x00\\x01\\x02" in admin_client.get(f"/admin/deadletters/deadletter/{letters[3].id}/change/").content.decode()


def test_a_binary_dead_letter_replays_byte_for_byte(consumers, broker):
    key, value, headers = POISON["confluent-wire-format"]
    produce(broker.bootstrap, ORDERS_CREATED, [(1, key, value, headers)])
    consumers()
    wait_for(lambda: DeadLetter.objects.exists(), timeout=60, what="the message to be dead-lettered")
    letter = DeadLetter.objects.get()

    report = dead_letters_replay(ids=[letter.id])

    assert (report.replayed, report.refused) == (1, [])
    letter.refresh_from_db()
    assert letter.replayed_at is not None
    # The replay goes where the key's partitioner sends it, as any event does.
    records = [r for r in read_topic(broker.bootstrap, ORDERS_CREATED) if r.key == key]
    assert len(records) == 2
    original, replayed = sorted(records, key=lambda r: r.partition != 1)  # the original was sent to partition 1
    assert (replayed.key, replayed.value, list(replayed.headers)) == (original.key, original.value, list(original.headers))
    assert replayed.value == value and [(n, v) for n, v in replayed.headers] == headers  # no dlt-* header went back


def test_a_text_value_corrected_in_the_admin_is_replayed_as_corrected(consumers, broker, admin_client):
    produce(broker.bootstrap, ORDERS_CREATED, [(2, b"k", b'{"eventType": "ORDER_CREATED", "oops": ', [("event_id", b"t-1")])])
    consumers()
    wait_for(lambda: DeadLetter.objects.exists(), timeout=60, what="the message to be dead-lettered")
    letter = DeadLetter.objects.get()
    corrected = '{"eventType": "ORDER_CREATED", "fixed": "é"}'

    response = admin_client.post(f"/admin/deadletters/deadletter/{letter.id}/change/", {"value_text": corrected})
    assert response.status_code == 302, response.content
    response = admin_client.post(
        "/admin/deadletters/deadletter/", {"action": "replay", "_selected_action": [letter.id]}, follow=True
    )

    assert response.status_code == 200
    letter.refresh_from_db()
    assert bytes(letter.value) == corrected.encode() and letter.replayed_at is not None
    values = [r.value for r in read_topic(broker.bootstrap, ORDERS_CREATED) if r.key == b"k"]
    assert sorted(values) == sorted([b'{"eventType": "ORDER_CREATED", "oops": ', corrected.encode()])


def test_a_dead_letter_that_cannot_be_stored_waits_for_the_database_without_committing(consumers, broker):
    proxy = TcpProxy(connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432)).start()
    try:
        consumer = consumers(DATABASE_URL=database_url_for_tests(proxy.port))
        wait_for(lambda: '"partitions assigned"' in consumer.log(), timeout=60, what="the consumer to join")
        proxy.cut()  # the consumer's PostgreSQL goes away (this test's own connection does not)
        key, value, headers = POISON["nul-value"]
        produce(broker.bootstrap, ORDERS_CREATED, [(0, key, value, headers)])

        wait_for(
            lambda: consumer.log().count("dead letter not stored, will retry") >= 3,
            timeout=60,
            what="the consumer to retry storing the dead letter",
        )
        assert consumer.process.poll() is None  # waiting, not crashed
        assert committed_offsets(broker.bootstrap, GROUP, ORDERS_CREATED).get(0, 0) == 0
        assert not DeadLetter.objects.exists()
        assert len(read_topic(broker.bootstrap, ORDERS_CREATED_DLQ)) == 1  # published once, not on every retry

        proxy.restore()

        wait_for(lambda: DeadLetter.objects.exists(), timeout=60, what="the dead letter stored once the database is back")
        letter = DeadLetter.objects.get()
        assert (bytes(letter.key), bytes(letter.value), letter.headers) == (key, value, headers)
        wait_for(
            lambda: committed_offsets(broker.bootstrap, GROUP, ORDERS_CREATED).get(0) == 1,
            timeout=30,
            what="the offset commit after the dead letter was stored",
        )
        assert len(read_topic(broker.bootstrap, ORDERS_CREATED_DLQ)) == 1
        assert consumer.process.poll() is None
    finally:
        proxy.cut()
