"""Take over the dead-letter table from `resilience` (state only: the table stays as it is).

`resilience` imports nothing of ours, but dead letters are published to and
replayed onto Kafka, so they moved to an app of their own; the next migration
renames the table and converts its columns to bytes.
"""
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("resilience", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
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
            ],
            database_operations=[],
        ),
    ]
