"""Create the dead-letter table under the name it first had, `resilience_deadletter`.

Dead letters began in the `resilience` app (its 0001 created this table, its
0002 handed the model over to this migration, which was then state only).
`resilience` is no Django app any more, so this migration now creates the table
itself, exactly as `resilience` 0001 did: a database migrated before the change
has this migration recorded already and never runs it again, a fresh one gets
the same table, and 0002 renames and converts it in both. The two stale
`resilience` rows in django_migrations are removed by 0003.
"""
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="DeadLetter",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("original_topic", models.CharField(db_index=True, max_length=200)),
                ("original_partition", models.IntegerField()),
                ("original_offset", models.BigIntegerField()),
                ("original_timestamp", models.BigIntegerField(blank=True, null=True)),
                ("consumer_group", models.CharField(max_length=200)),
                ("dead_letter_topic", models.CharField(max_length=200)),
                ("key", models.TextField(blank=True, null=True)),
                ("value", models.TextField()),
                ("headers", models.JSONField(default=list)),
                ("exception_class", models.CharField(db_index=True, max_length=200)),
                ("exception_message", models.TextField()),
                ("stack_trace", models.TextField()),
                ("attempts", models.PositiveIntegerField()),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("replayed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "resilience_deadletter",
                "ordering": ["-id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("original_topic", "original_partition", "original_offset", "consumer_group"),
                        name="dead_letter_unique_delivery",
                    )
                ],
            },
        ),
    ]
