"""Rename the table to the app's and keep key, value and headers as bytes.

Existing rows were stored as text (their bytes already decoded with
replacement), so their UTF-8 encoding is the best copy there is.
"""
import django.contrib.postgres.fields
from django.db import migrations, models

TO_BYTES = """
ALTER TABLE deadletters_deadletter
    ADD COLUMN key_preview text NOT NULL DEFAULT '',
    ADD COLUMN value_preview text NOT NULL DEFAULT '',
    ADD COLUMN header_names bytea[] NOT NULL DEFAULT '{}',
    ADD COLUMN header_values bytea[] NOT NULL DEFAULT '{}';
UPDATE deadletters_deadletter SET
    key_preview = coalesce(left(key, 2000), ''),
    value_preview = left(value, 2000),
    header_names = coalesce(
        (SELECT array_agg(convert_to(h ->> 0, 'UTF8') ORDER BY n) FROM jsonb_array_elements(headers) WITH ORDINALITY AS e(h, n)),
        '{}'
    ),
    header_values = coalesce(
        (SELECT array_agg(convert_to(h ->> 1, 'UTF8') ORDER BY n) FROM jsonb_array_elements(headers) WITH ORDINALITY AS e(h, n)),
        '{}'
    );
ALTER TABLE deadletters_deadletter
    ALTER COLUMN key TYPE bytea USING convert_to(key, 'UTF8'),
    ALTER COLUMN value TYPE bytea USING convert_to(value, 'UTF8'),
    ALTER COLUMN value DROP NOT NULL,
    DROP COLUMN headers,
    ALTER COLUMN key_preview DROP DEFAULT,
    ALTER COLUMN value_preview DROP DEFAULT,
    ALTER COLUMN header_names DROP DEFAULT,
    ALTER COLUMN header_values DROP DEFAULT;
"""


class Migration(migrations.Migration):

    dependencies = [
        ("deadletters", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelTable(name="deadletter", table=None),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(TO_BYTES, reverse_sql=migrations.RunSQL.noop)],
            state_operations=[
                migrations.RemoveField(model_name="deadletter", name="headers"),
                migrations.AlterField(model_name="deadletter", name="key", field=models.BinaryField(blank=True, null=True)),
                migrations.AlterField(model_name="deadletter", name="value", field=models.BinaryField(blank=True, null=True)),
                migrations.AddField(
                    model_name="deadletter",
                    name="header_names",
                    field=django.contrib.postgres.fields.ArrayField(base_field=models.BinaryField(), blank=True, default=list, size=None),
                ),
                migrations.AddField(
                    model_name="deadletter",
                    name="header_values",
                    field=django.contrib.postgres.fields.ArrayField(base_field=models.BinaryField(), blank=True, default=list, size=None),
                ),
                migrations.AddField(model_name="deadletter", name="key_preview", field=models.TextField(blank=True, default="")),
                migrations.AddField(
                    model_name="deadletter",
                    name="value_preview",
                    field=models.TextField(
                        blank=True,
                        default="",
                        help_text="The value decoded as UTF-8 (undecodable bytes escaped), truncated.",
                    ),
                ),
            ],
        ),
    ]
