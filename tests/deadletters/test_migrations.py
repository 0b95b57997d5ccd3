"""A database migrated by the previous main migrates forward cleanly now that `resilience` has no migrations.

Runs `manage.py migrate` of two trees against a scratch database of its own:
the previous main's (its `resilience` app created the dead-letter table) and
this checkout's, with a dead letter written in between that must come through.
"""
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from django.conf import settings

from deadletters.services import message_digest
from messaging.kafka.consumer import IncomingMessage

ROOT = Path(settings.BASE_DIR)
# The last main whose `resilience` app still had its two migrations.
PREVIOUS_MAIN = "e584d89"

WRITE_DEAD_LETTER = """
from deadletters.models import DeadLetter
DeadLetter.objects.create(
    original_topic="orders.created", original_partition=2, original_offset=41, consumer_group="order-service-group",
    dead_letter_topic="orders.created.dlq", key=b"order-7", value=b"\\x00not json", header_names=[b"trace"],
    header_values=[b"\\xff"], key_preview="order-7", value_preview="\\\\x00not json", exception_class="ValueError",
    exception_message="bad", stack_trace="Traceback", attempts=3,
)
"""


def _connect(database: str):
    db = settings.DATABASES["default"]
    connection = psycopg2.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], password=db["PASSWORD"] or None, dbname=database
    )
    connection.autocommit = True
    return connection


def _admin(statement: str) -> None:
    connection = _connect("postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def _manage(tree: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "ecommerce.settings.test"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=tree, env=environment, capture_output=True, text=True, timeout=240
    )


@pytest.fixture
def scratch_database() -> Iterator[tuple[str, str]]:
    """Yield the name and URL of an empty database of this test's own, dropped afterwards whatever happens."""
    db = settings.DATABASES["default"]
    name = f"{db['NAME']}_migrate_forward"
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield name, url
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def previous_main(tmp_path: Path) -> Path:
    """Extract the previous main's tree (CI clones main with its full history, so the commit is there)."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_MAIN}^{{commit}}"], capture_output=True)
    assert found.returncode == 0, (
        f"commit {PREVIOUS_MAIN} (the previous main) is not in this clone; fetch the full history "
        "(git fetch --unshallow) to run the forward-migration test"
    )
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_MAIN], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path


def test_a_database_migrated_by_the_previous_main_migrates_forward_and_keeps_its_dead_letters(
    scratch_database, previous_main
):
    name, url = scratch_database
    # Given a database migrated by the previous main, resilience's migrations applied, holding a dead letter
    old = _manage(previous_main, url, "migrate", "--noinput")
    assert old.returncode == 0, old.stderr
    wrote = _manage(previous_main, url, "shell", "-c", WRITE_DEAD_LETTER)
    assert wrote.returncode == 0, wrote.stderr
    connection = _connect(name)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM django_migrations WHERE app = 'resilience' ORDER BY name")
            assert [row[0] for row in cursor.fetchall()] == ["0001_initial", "0002_dead_letters_moved"]

        # When this checkout migrates it
        new = _manage(ROOT, url, "migrate", "--noinput")

        # Then it succeeds, nothing is left to migrate, and the dead letter is as it was written
        assert new.returncode == 0, new.stderr
        assert "deadletters.0003_forget_resilience_migrations... OK" in new.stdout
        assert "deadletters.0004_content_digest... OK" in new.stdout
        check = _manage(ROOT, url, "migrate", "--check")
        assert check.returncode == 0, check.stdout + check.stderr
        shown = _manage(ROOT, url, "showmigrations", "deadletters")
        assert shown.returncode == 0, shown.stderr
        assert "[ ]" not in shown.stdout
        assert "0003_forget_resilience_migrations" in shown.stdout
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM django_migrations WHERE app = 'resilience'")
            assert cursor.fetchone() == (0,)
            cursor.execute(
                "SELECT original_topic, original_offset, key, value, header_names, header_values, attempts,"
                " content_digest FROM deadletters_deadletter"
            )
            rows = [
                (topic, offset, bytes(key), bytes(value), [bytes(n) for n in names], [bytes(v) for v in values], *rest)
                for topic, offset, key, value, names, values, *rest in cursor.fetchall()
            ]
            # The letter written before content digests existed gets the one a new letter of it would have.
            digest = message_digest(
                IncomingMessage(
                    topic="orders.created", partition=2, offset=41, timestamp=None, key=b"order-7",
                    value=b"\x00not json", headers=(("trace", b"\xff"),),
                )
            )  # fmt: skip
            assert rows == [("orders.created", 41, b"order-7", b"\x00not json", [b"trace"], [b"\xff"], 3, digest)]
            cursor.execute("SELECT to_regclass('resilience_deadletter')")
            assert cursor.fetchone() == (None,)
    finally:
        connection.close()


def test_a_fresh_database_gets_the_same_dead_letter_table(scratch_database):
    name, url = scratch_database

    migrated = _manage(ROOT, url, "migrate", "--noinput")

    assert migrated.returncode == 0, migrated.stderr
    connection = _connect(name)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'deadletters_deadletter' AND column_name IN ('key', 'value', 'header_names')"
                " ORDER BY column_name"
            )
            assert cursor.fetchall() == [("header_names", "ARRAY"), ("key", "bytea"), ("value", "bytea")]
            cursor.execute("SELECT conname FROM pg_constraint WHERE conname LIKE 'dead_letter_unique_%'")
            assert cursor.fetchall() == [("dead_letter_unique_message",)]
    finally:
        connection.close()
