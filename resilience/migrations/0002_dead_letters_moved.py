"""Hand the dead-letter table to the `deadletters` app (state only: no data moves here)."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("resilience", "0001_initial"),
        ("deadletters", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="DeadLetter")], database_operations=[]),
    ]
