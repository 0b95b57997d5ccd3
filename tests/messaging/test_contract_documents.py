"""The contract's documents: the AsyncAPI document passes the official parser, which catches a broken one,
and the documents say what the code does (topics, partitions, schemas, headers)."""
import shutil
import uuid
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from messaging.contract.events import SCHEMA_FILES, TOPICS, VALIDATORS, event_headers
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
