"""The contract's documents: the AsyncAPI document passes the official parser, which catches a broken one,
and the documents say what the code does (topics, partitions, schemas, headers)."""
import json
import shutil
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from messaging.contract.events import (
    FAST_VALIDATORS,
    SCHEMA_FILES,
    TOPICS,
    VALIDATORS,
    InvalidEvent,
    event_headers,
    event_validate,
    order_created_payload,
    order_item_payload,
    payment_completed_payload,
    payment_refunded_payload,
    schema_keywords_draft_7_alike,
)
from tests.messaging.contract_support import (
    ASYNCAPI,
    CONTRACT,
    asyncapi_document,
    asyncapi_parse,
    diagnostics,
    payload_schema_files,
    published_schema,
)
from tests.unit_support import _clean_cache, _clean_shared_state  # noqa: F401  (no services needed)

pytestmark = pytest.mark.unit


def test_the_asyncapi_document_passes_the_official_parser():
    result = asyncapi_parse(ASYNCAPI)

    assert result.returncode == 0, result.stdout + result.stderr
    found = diagnostics(result)
    assert [d for d in found if d.get("severity") in ("error", "warning")] == []
    summary = found[-1]
    assert summary["valid"] is True and summary["asyncapi"] == "3.0.0"
    assert sorted(summary["channels"]) == sorted(topic.name for topic in TOPICS)


def _broken_copy(tmp_path: Path, file_name: str, old: str, new: str) -> Path:
    """Copy the document and its schemas, with one edit in one file."""
    shutil.copy(ASYNCAPI, tmp_path / ASYNCAPI.name)
    shutil.copytree(CONTRACT / "schemas", tmp_path / "schemas")
    target = tmp_path / file_name
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    return tmp_path / ASYNCAPI.name


@pytest.mark.parametrize(
    "file_name,old,new,expected",
    [
        ("asyncapi.yaml", "action: send", "action: publish", "must be equal to one of the allowed values"),
        ("asyncapi.yaml", "$ref: '#/channels/ordersCreated'", "$ref: '#/channels/ordersShipped'", "does not exist"),
        ("asyncapi.yaml", "./schemas/payment-refunded-1.0.json", "./schemas/payment-returned-1.0.json", "ENOENT"),
        ("schemas/order-created-1.0.json", '"type": "integer"', '"type": "integr"', "allowed values"),
    ],
    ids=["an-asyncapi-2-action", "a-dangling-channel-reference", "a-missing-schema-file", "a-broken-payload-schema"],
)
def test_the_parser_rejects_a_broken_document(tmp_path, file_name, old, new, expected):
    result = asyncapi_parse(_broken_copy(tmp_path, file_name, old, new))

    assert result.returncode == 1, result.stdout + result.stderr
    errors = [d for d in diagnostics(result) if d.get("severity") == "error"]
    assert any(expected in error["message"] for error in errors), errors
    assert not any(d.get("valid") for d in diagnostics(result))


def test_the_asyncapi_document_declares_the_topics_the_code_creates():
    declared = {
        channel["address"]: channel["bindings"]["kafka"]["partitions"]
        for channel in asyncapi_document()["channels"].values()
    }

    assert declared == {topic.name: topic.partitions for topic in TOPICS}


def test_each_event_schema_is_carried_by_exactly_one_topic_and_validates_incoming_events():
    carried = [name for names in payload_schema_files().values() for name in names]

    assert sorted(carried) == sorted(SCHEMA_FILES.values())
    for (event_type, version), file_name in SCHEMA_FILES.items():
        schema = published_schema(file_name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["properties"]["eventType"] == {"const": event_type}
        assert schema["properties"]["eventVersion"] == {"const": version}
        assert VALIDATORS[(event_type, version)].schema == schema  # the consumer validates with the published file


def test_the_documented_headers_are_the_ones_events_carry():
    documented = asyncapi_document()["components"]["schemas"]["EventHeaders"]
    headers = event_headers(event_id=uuid.uuid4(), event_type="ORDER_CREATED", correlation_id=None)

    assert set(documented["required"]) == set(documented["properties"]) == set(headers)
    assert headers["correlation_id"] == ""


def _valid_events() -> list[dict]:
    moment = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)
    address = {"street": "1 Way", "city": "London", "state": "LDN", "postalCode": "N1 1AA", "country": "GB"}
    item = order_item_payload(
        product_id=uuid.uuid4(), product_sku="SKU-1", product_name="Mug", quantity=2,
        price_snapshot=Decimal("4.50"), subtotal=Decimal("9.00"),
    )
    created = order_created_payload(
        order_id=uuid.uuid4(), order_number="ORD-20261206-000001",
        customer={"name": "A", "email": "a@example.com", "phone": "+15551234567", "shippingAddress": address},
        items=[item], subtotal=Decimal("9.00"), cart_id=uuid.uuid4(), correlation_id="c", created_at=moment,
    )
    completed = payment_completed_payload(
        order_id=uuid.uuid4(), order_number="ORD-20261206-000002", payment_transaction_id=uuid.uuid4(),
        status="SUCCESS", amount=Decimal("9.00"), payment_method="CARD", external_transaction_id="ch_1",
        failure_reason=None, correlation_id=None, moment=moment,
    )
    refunded = payment_refunded_payload(
        payment={**completed, "status": "REFUNDED"}, refund_transaction_id="re_1", refund_reason="customer",
        refunded_at=moment,
    )
    return [json.loads(json.dumps(event)) for event in (created, completed, refunded)]


_REMOVED = object()


def _breakages(event: dict) -> list[dict]:
    """The event with each field, at every depth, removed, retyped, cut or stretched, and with a field too many."""
    odd = [None, 0, 1.0, -1, True, "", "x", "9.999", "ORD-1\n", {}, []]
    broken = [{**event, "extra": 1}]

    def replaced(path: tuple, value) -> dict:
        copy = json.loads(json.dumps(event))
        node = copy
        for step in path[:-1]:
            node = node[step]
        if value is _REMOVED:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        return copy

    def walk(node, path: tuple) -> None:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in children:
            stretched = [f"{child}\n", child[:-1], child[1:], child + child[-1:]] if isinstance(child, str) else [2]
            broken.extend(replaced((*path, key), value) for value in [_REMOVED, *odd, *stretched])
            walk(child, (*path, key))

    walk(event, ())
    return broken


def test_the_fast_path_accepts_only_what_the_published_schemas_accept():
    valid = _valid_events()
    cases = [(event, case) for event in valid for case in [event, *_breakages(event)]]
    verdicts = []
    for event, payload in cases:
        kind = (event["eventType"], event["eventVersion"])
        published = VALIDATORS[kind].is_valid(payload)
        try:
            event_validate(payload, event_types=[kind[0]])
            verdicts.append((published, True))
        except InvalidEvent:
            verdicts.append((published, False))

    assert [accepted for _, accepted in verdicts] == [published for published, _ in verdicts]
    assert sum(accepted for _, accepted in verdicts) >= 3 and sum(not accepted for _, accepted in verdicts) > 300
    for payload in valid:  # and the fast path itself vouches for a valid event, or it saves nothing
        FAST_VALIDATORS[(payload["eventType"], payload["eventVersion"])](payload)


def test_the_fast_path_refuses_a_schema_whose_keywords_draft_7_reads_otherwise():
    assert all(schema_keywords_draft_7_alike(published_schema(name)) for name in SCHEMA_FILES.values())
    assert not schema_keywords_draft_7_alike({"type": "object", "dependentRequired": {"a": ["b"]}})
    assert not schema_keywords_draft_7_alike({"properties": {"a": {"$ref": "#/$defs/a", "type": "string"}}})
    assert not schema_keywords_draft_7_alike({"items": {"prefixItems": [{"type": "string"}]}})
