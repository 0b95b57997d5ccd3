"""Planted defects: test-only switches that break one guarantee on purpose, so a test can show the soak's checker reports it.

Each name breaks one place, which asks `planted(NAME)`:

* `skip-processed-event-check` (orders/processing.py): a redelivered
  OrderCreated is not recognised as applied;
* `commit-offset-before-database` (orders/management/commands/consume_orders.py):
  the consumer commits the offsets of what it polled, before the database work;
* `drop-outbox-row` (outbox/relay.py): the first row of each batch is marked
  PUBLISHED without being sent.

The settings read `PLANTED_DEFECTS` (comma-separated names) through
`planted_defects_validate`: the test settings take them, every other settings
module refuses to start when it is set, so no platform runs with one by
mistake. `planted` reads the setting per call, never at import.
"""
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SKIP_PROCESSED_EVENT_CHECK = "skip-processed-event-check"
COMMIT_OFFSET_BEFORE_DATABASE = "commit-offset-before-database"
DROP_OUTBOX_ROW = "drop-outbox-row"
PLANTED_DEFECT_NAMES = frozenset({SKIP_PROCESSED_EVENT_CHECK, COMMIT_OFFSET_BEFORE_DATABASE, DROP_OUTBOX_ROW})


def planted(name: str) -> bool:
    """Whether the defect `name` is planted in this process (only ever under the test settings)."""
    return name in settings.PLANTED_DEFECTS


def planted_defects_validate(names: Iterable[str], *, environment: str) -> frozenset[str]:
    """The defects to plant: only the test settings may name any, and only known ones."""
    chosen = frozenset(name.strip() for name in names if name.strip())
    if chosen and environment != "test":
        raise ImproperlyConfigured(
            f"PLANTED_DEFECTS plants defects for the soak checker's tests only; the {environment} settings refuse it. Unset it."
        )
    unknown = sorted(chosen - PLANTED_DEFECT_NAMES)
    if unknown:
        raise ImproperlyConfigured(f"PLANTED_DEFECTS: unknown defects {unknown}; known: {sorted(PLANTED_DEFECT_NAMES)}")
    return chosen
