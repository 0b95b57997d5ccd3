"""Forget the two migrations of `resilience`, which is no Django app any more.

A database migrated before the change still lists `resilience` 0001 and 0002
as applied. Django ignores rows of an app it does not know, so they are
harmless to `migrate`; they are deleted all the same so that such a database's
history is the same as a fresh one's, and a future app or tool that reads
django_migrations does not find migrations that exist nowhere. Nothing to undo:
on the way back the rows are not needed either.
"""
from django.db import migrations
from django.db.migrations.recorder import MigrationRecorder


def forget_resilience_migrations(apps, schema_editor) -> None:
    """Delete the recorder rows of the removed `resilience` migrations."""
    recorder = MigrationRecorder(schema_editor.connection)
    recorder.migration_qs.filter(app="resilience").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("deadletters", "0002_bytes"),
    ]

    operations = [
        migrations.RunPython(forget_resilience_migrations, reverse_code=migrations.RunPython.noop),
    ]
