"""Reading the published contract (messaging/contract) as an outside subscriber would: its files, not our code."""
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.db import connection
from jsonschema import Draft7Validator, Draft202012Validator

from outbox.models import OutboxEvent

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = ROOT / "messaging" / "contract"
ASYNCAPI = CONTRACT / "asyncapi.yaml"
PARSER_DIRECTORY = ROOT / "tools" / "asyncapi"


@cache
def asyncapi_document() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())


def _component(reference: str) -> dict[str, Any]:
    """Follow a local `#/...` reference in the AsyncAPI document."""
    node: Any = asyncapi_document()
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def payload_schema_files() -> dict[str, str]:
    """Map each channel address to the schema files of the messages it carries, per the AsyncAPI document."""
    files: dict[str, set[str]] = {}
    for channel in asyncapi_document()["channels"].values():
        for message_reference in channel["messages"].values():
            payload = _component(message_reference["$ref"])["payload"]
            reference = payload.get("schema", {}).get("$ref")
            files.setdefault(channel["address"], set())
            if reference:
                files[channel["address"]].add(Path(reference).name)
    return files


@cache
def published_schema(file_name: str) -> dict[str, Any]:
    return json.loads((CONTRACT / "schemas" / file_name).read_text())


def published_validator(file_name: str) -> Draft202012Validator:
    """A validator built here from the published file, independent of the one the consumer compiled."""
    return Draft202012Validator(published_schema(file_name))


def schema_file_of(event_type: str) -> str:
    """Find the published schema whose `eventType` is `event_type`."""
    [file_name] = [
        path.name
        for path in (CONTRACT / "schemas").glob("*.json")
        if published_schema(path.name)["properties"]["eventType"].get("const") == event_type
    ]
    return file_name


def wire_value(row: OutboxEvent) -> dict[str, Any]:
    """The value the relay puts on Kafka for an outbox row: its payload as PostgreSQL renders it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT payload::text FROM {OutboxEvent._meta.db_table} WHERE id = %s", [row.id])
        (text,) = cursor.fetchone()
    return json.loads(text)


def assert_conforms(row: OutboxEvent) -> dict[str, Any]:
    """Assert an outbox row is a contract-conforming event (value, topic, key, headers); return its value."""
    value = wire_value(row)
    file_name = schema_file_of(value["eventType"])
    errors = [f"{error.json_path}: {error.message}" for error in published_validator(file_name).iter_errors(value)]
    assert errors == []
    assert set(value) == set(published_schema(file_name)["required"])  # every documented field, nothing else
    assert file_name in payload_schema_files()[row.topic]
    assert row.key == value["orderId"]
    assert row.headers == {
        "event_id": value["eventId"],
        "event_type": value["eventType"],
        "correlation_id": value["correlationId"] or "",
    }
    headers_schema = asyncapi_document()["components"]["schemas"]["EventHeaders"]
    assert list(Draft7Validator(headers_schema).iter_errors(row.headers)) == []
    return value


def asyncapi_parse(document: Path) -> subprocess.CompletedProcess:
    """Run the official AsyncAPI parser (tools/asyncapi) on a document; its diagnostics are JSON lines."""
    node = shutil.which("node")
    if node is None or not (PARSER_DIRECTORY / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.fail("the AsyncAPI parser is not installed: install Node.js and npm, then run bash scripts/bootstrap.sh")
    return subprocess.run(
        [node, str(PARSER_DIRECTORY / "validate.mjs"), str(document)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def diagnostics(result: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
