"""Vacuum the outbox like the queue it is.

Every published row leaves a dead entry in the PENDING partial index that the
claim query has to step over until vacuum removes it. PostgreSQL's default
(vacuum after 20% of the table changed) lets thousands pile up on a busy
outbox, so vacuum this table after a fixed number of changes and without
throttling. The `outbox.vacuum` beat job covers servers where autovacuum is
off altogether.
"""
from django.db import migrations

TABLE = "outbox_outboxevent"
PARAMETERS = (
    "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000, autovacuum_vacuum_cost_delay = 0"
)
RESET = (
    "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, "
    "autovacuum_analyze_threshold, autovacuum_vacuum_cost_delay"
)


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [
        migrations.RunSQL(f"ALTER TABLE {TABLE} SET ({PARAMETERS})", f"ALTER TABLE {TABLE} RESET ({RESET})"),
    ]
