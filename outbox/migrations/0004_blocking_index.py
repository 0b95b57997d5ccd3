"""Index the rows that can hold an aggregate back, so the relay's claim probes them instead of scanning the outbox.

Built CONCURRENTLY (so outside a transaction): the outbox keeps taking
checkouts' rows while the index is built on a table of a week's events.
"""
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("outbox", "0003_refused_status")]

    operations = [
        AddIndexConcurrently(
            model_name="outboxevent",
            index=models.Index(
                condition=~models.Q(status="PUBLISHED") & (~models.Q(status="PENDING") | models.Q(next_attempt_at__isnull=False)),
                fields=["aggregate_type", "aggregate_id", "id"],
                name="outbox_blocking_idx",
            ),
        ),
    ]
