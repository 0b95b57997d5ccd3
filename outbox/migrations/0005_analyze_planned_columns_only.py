"""ANALYZE only the outbox columns the planner uses; skip the event bodies.

Under load the outbox is analyzed about once a minute (migration 0002's
threshold, or the `outbox.vacuum` job). Sampling the JSON payload and headers
and the per-event strings was most of each ANALYZE: 380 ms of a core on a
table of 23,000 rows, against about 105 ms with their statistics off, and a
checkout arriving during it waited up to 0.7 s on the two cores (README,
"Capacity"). No query filters, joins or sorts on these columns; event_id's
lookups go through its unique index, which needs no statistics.
"""
from django.db import migrations

TABLE = "outbox_outboxevent"
UNPLANNED = ("payload", "headers", "key", "event_id", "topic", "last_error", "attempts")


def _statistics(target: int) -> str:
    # -1: back to default_statistics_target.
    columns = ", ".join(f"ALTER COLUMN {column} SET STATISTICS {target}" for column in UNPLANNED)
    return f"ALTER TABLE {TABLE} {columns}"


class Migration(migrations.Migration):
    dependencies = [("outbox", "0004_blocking_index")]

    operations = [migrations.RunSQL(_statistics(0), _statistics(-1))]
