"""The order consumer as a real process against a real broker: end to end, poison, crash, replay."""
import json
import signal

import pytest
from kafka import KafkaProducer

from deadletters.models import DeadLetter
from deadletters.services import dead_letters_replay
from messaging.contract.events import ORDERS_CREATED, ORDERS_CREATED_DLQ, PAYMENTS_COMPLETED
from orders.models import Order, PaymentTransaction
from outbox.models import OutboxEvent
from outbox.relay import outbox_drain
from tests.support import (
    ConsumerProcess,
    TcpProxy,
    committed_offsets,
    database_url_for_tests,
    header,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)


def relay() -> None:
    outbox_drain(batch_size=100, time_budget_seconds=10)


def status(order_id) -> str:
    return Order.objects.get(id=order_id).status


def test_checkout_to_paid_to_payment_completed_end_to_end(place_order, consumers, broker, api_client):
    consumer = consumers()
    row = place_order()
    relay()  # OrderCreated onto Kafka

    wait_for(lambda: status(row.aggregate_id) == "PAID", timeout=60, what="the consumer to pay the order")
    relay()  # PaymentCompleted onto Kafka

    order = Order.objects.get(id=row.aggregate_id)
    records = [r for r in read_topic(broker.bootstrap, PAYMENTS_COMPLETED) if r.key == str(order.id).encode()]
    assert len(records) == 1
    payload = json.loads(records[0].value)
    assert (payload["status"], payload["orderNumber"]) == ("SUCCESS", order.order_number)
    assert header(records[0], "event_type") == "PAYMENT_COMPLETED"
    assert header(records[0], "correlation_id") == row.payload["correlationId"]
    body = api_client.get(f"/api/v1/orders/{order.order_number}").json()
    assert (body["status"], body["paymentStatus"]) == ("PAID", "SUCCESS")
    assert consumer.stop() == 0  # SIGTERM: finished, committed, left the group


def test_poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on(
    place_order, consumers, broker, admin_client
):
    good = place_order()
    OutboxEvent.objects.filter(id=good.id).delete()  # this test sends it itself, after the poison
    poison = [
        b"\xff{this is not json",
        json.dumps({"eventType": "ORDER_CREATED", "eventVersion": "1.0", "orderId": "not-a-uuid"}).encode(),
        json.dumps({"eventType": "ORDER_TELEPORTED", "eventVersion": "1.0"}).encode(),
    ]
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap])
    for index, value in enumerate(poison):
        headers = [("event_id", f"poison-{index}".encode()), ("correlation_id", f"corr-{index}".encode())]
        producer.send(ORDERS_CREATED, partition=0, key=f"key-{index}".encode(), value=value, headers=headers)
    good_headers = [(name, str(value).encode()) for name, value in good.headers.items()]
    producer.send(ORDERS_CREATED, partition=0, key=good.key.encode(), value=json.dumps(good.payload).encode(), headers=good_headers)
    producer.flush()
    producer.close()

    consumers()

    wait_for(lambda: status(good.aggregate_id) == "PAID", timeout=60, what="the good message after the poison")
    assert DeadLetter.objects.count() == 3
    dead = sorted(read_topic(broker.bootstrap, ORDERS_CREATED_DLQ), key=lambda r: int(header(r, "dlt-original-offset")))
    assert len(dead) == 3
    for index, record in enumerate(dead):
        assert record.value == poison[index] and record.key == f"key-{index}".encode()
        assert header(record, "event_id") == f"poison-{index}"  # original headers intact
        assert header(record, "correlation_id") == f"corr-{index}"
        assert header(record, "dlt-original-topic") == ORDERS_CREATED
        assert header(record, "dlt-original-partition") == "0"
        assert header(record, "dlt-original-offset") == str(index)
        assert header(record, "dlt-original-consumer-group") == "order-service-group"
        assert header(record, "dlt-exception-fqcn") == "orders.processing.PoisonMessage"
        assert header(record, "dlt-exception-message") and "Traceback" in header(record, "dlt-exception-stacktrace")
        assert header(record, "dlt-attempts") == "1"
        assert header(record, "dlt-original-timestamp")
    page = admin_client.get("/admin/deadletters/deadletter/")
    assert page.status_code == 200
    assert page.context["cl"].result_count == 3
    assert {letter.exception_class for letter in page.context["cl"].result_list} == {"orders.processing.PoisonMessage"}


def test_killed_after_database_commit_before_offset_commit_pays_once(place_order, consumers, payment_provider):
    row = place_order()
    relay()
    crashing = consumers(CONSUMER_CRASH_AFTER_DB_COMMIT="true")
    assert crashing.wait(timeout=60) == -9  # SIGKILLed itself between the two commits
    order = Order.objects.get(id=row.aggregate_id)
    assert order.status == "PAID"

    survivor = consumers()
    wait_for(lambda: "duplicate delivery ignored" in survivor.log(), timeout=60, what="the redelivery")

    assert PaymentTransaction.objects.filter(order=order).count() == 1
    assert len(payment_provider.charges(str(order.id))) == 1
    assert OutboxEvent.objects.filter(event_type="PAYMENT_COMPLETED", aggregate_id=str(order.id)).count() == 1


def test_a_dead_letter_replayed_after_fixing_its_cause_is_processed_once(place_order, consumers, payment_provider):
    row = place_order()
    order = Order.objects.get(id=row.aggregate_id)
    items = list(order.items.all())
    order.delete()  # the event will name an order this database does not have: a processing error
    relay()
    consumer = consumers(CONSUMER_MAX_ATTEMPTS="3")

    wait_for(lambda: DeadLetter.objects.exists(), timeout=60, what="the unprocessable event to be dead-lettered")
    letter = DeadLetter.objects.get()
    assert (letter.exception_class, letter.attempts) == ("orders.processing.OrderNotFound", 3)

    order.pk = row.aggregate_id  # delete() cleared it
    order.save(force_insert=True)  # the cause is fixed: the order exists
    for item in items:
        item.save(force_insert=True)
    assert dead_letters_replay(ids=[letter.id]).replayed == 1  # straight to the topic, acknowledged
    wait_for(lambda: status(order.id) == "PAID", timeout=60, what="the replayed event to be processed")

    assert dead_letters_replay(ids=[letter.id]).replayed == 1  # replayed twice by mistake
    wait_for(lambda: "duplicate delivery ignored" in consumer.log(), timeout=60, what="the second replay")
    assert PaymentTransaction.objects.filter(order=order).count() == 1
    assert len(payment_provider.charges(str(order.id))) == 1


def _partition_of(broker, order_id: str) -> tuple[int, int]:
    [record] = [r for r in read_topic(broker.bootstrap, ORDERS_CREATED) if r.key == order_id.encode()]
    return record.partition, record.offset


def test_a_database_outage_is_retried_without_dead_letter_or_offset_commit(place_order, consumers, broker):
    from django.db import connection

    proxy = TcpProxy(connection.settings_dict["HOST"] or "127.0.0.1", int(connection.settings_dict["PORT"] or 5432)).start()
    row = place_order()
    relay()
    partition, offset = _partition_of(broker, row.aggregate_id)
    proxy.cut()  # the consumer's PostgreSQL goes away (this test's own connection does not)
    first = consumers(DATABASE_URL=database_url_for_tests(proxy.port))
    wait_for(
        lambda: first.log().count("infrastructure unavailable, retrying without committing") >= 3,
        timeout=60,
        what="the consumer to retry through the outage",
    )
    assert committed_offsets(broker.bootstrap, "order-service-group", ORDERS_CREATED).get(partition, 0) <= offset
    assert not DeadLetter.objects.exists()
    assert status(row.aggregate_id) == "PENDING"

    first.process.kill()  # die mid-outage: the offset was never committed, so nothing is lost
    first.process.wait(timeout=10)
    proxy.restore()
    consumers(DATABASE_URL=database_url_for_tests(proxy.port))

    wait_for(lambda: status(row.aggregate_id) == "PAID", timeout=60, what="the redelivered event after the outage")
    assert not DeadLetter.objects.exists()
    wait_for(
        lambda: committed_offsets(broker.bootstrap, "order-service-group", ORDERS_CREATED).get(partition) == offset + 1,
        timeout=10,
        what="the offset commit after the database commit",
    )
    proxy.cut()


def test_sigterm_finishes_the_message_in_hand_then_commits_and_leaves(place_order, consumers, broker, payment_provider):
    row = place_order()
    relay()
    partition, offset = _partition_of(broker, row.aggregate_id)
    payment_provider.faults(latency_seconds=2.0)  # slow, but within the 5 s limit
    consumer = consumers()
    wait_for(lambda: status(row.aggregate_id) == "PROCESSING", timeout=60, what="the payment to be under way")

    consumer.process.send_signal(signal.SIGTERM)

    assert consumer.wait(timeout=30) == 0
    assert status(row.aggregate_id) == "PAID"  # finished, not abandoned
    assert committed_offsets(broker.bootstrap, "order-service-group", ORDERS_CREATED)[partition] == offset + 1


def _assigned(consumer: ConsumerProcess) -> set[str]:
    """The partitions the consumer holds now, from its latest assignment log line."""
    latest: set[str] = set()
    for line in consumer.log().splitlines():
        if '"partitions assigned"' in line:
            latest = set(json.loads(line)["partitions"])
        elif '"partitions revoked"' in line:
            latest = set()
    return latest


def test_two_consumers_share_the_partitions_and_each_order_is_paid_once(place_order, consumers, broker):
    first, second = consumers(), consumers()
    wait_for(
        lambda: _assigned(first) and _assigned(second) and len(_assigned(first) | _assigned(second)) == 3,
        timeout=60,
        what="both consumers to hold partitions",
    )
    rows = [place_order() for _ in range(6)]
    OutboxEvent.objects.filter(id__in=[row.id for row in rows]).delete()  # sent below, two per partition
    producer = KafkaProducer(bootstrap_servers=[broker.bootstrap])
    for index, row in enumerate(rows):
        headers = [(name, str(value).encode()) for name, value in row.headers.items()]
        producer.send(ORDERS_CREATED, partition=index % 3, key=row.key.encode(), value=json.dumps(row.payload).encode(), headers=headers)
    producer.flush()
    producer.close()

    wait_for(lambda: {status(row.aggregate_id) for row in rows} == {"PAID"}, timeout=60, what="all six orders paid")

    assert PaymentTransaction.objects.filter(order_id__in=[row.aggregate_id for row in rows]).count() == 6
    assert first.log().count("order payment recorded") >= 1 and second.log().count("order payment recorded") >= 1
    assert first.log().count("order payment recorded") + second.log().count("order payment recorded") == 6
